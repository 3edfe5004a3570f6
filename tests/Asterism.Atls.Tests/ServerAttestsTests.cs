using System.Collections.Concurrent;
using System.Net.Security;
using Asterism.Attestation;
using Grpc.Core;

namespace Asterism.Atls.Tests;

/// <summary>CLI → recovering node: the server attests, the client validates before sending any request.</summary>
public sealed class ServerAttestsTests : IDisposable
{
    private readonly Node _node = new();
    private readonly CollectingLoggerProvider _serverLogs = new();
    private readonly CollectingLoggerProvider _clientLogs = new();

    public void Dispose() => _node.Dispose();

    private AtlsClientOptions ClientOptions(Action<AtlsPeer>? onValidated = null) =>
        new() { LoggerFactory = _clientLogs.Factory(), OnValidated = onValidated };

    [Fact]
    public async Task Ping_AttestedServer_ReachesServiceAndReportsPeer()
    {
        var nonces = new ConcurrentBag<string>();
        var issuer = _node.Issuer();
        var recording = new FuncIssuer(issuer.Variant, (userData, nonce) =>
        {
            nonces.Add(Convert.ToHexString(nonce));
            return issuer.Issue(userData, nonce);
        });
        await using var server = await ProbeServer.StartAsync(l => l.UseAtlsServer(recording), _serverLogs);
        var peers = new ConcurrentBag<AtlsPeer>();

        var reply = await server.PingAsync(AtlsClient.CreateHandler(_node.Validator(_clientLogs), ClientOptions(peers.Add)));
        await server.PingAsync(AtlsClient.CreateHandler(_node.Validator(_clientLogs), ClientOptions(peers.Add)));

        Assert.Equal("hello", reply.Text);
        Assert.Equal(2, server.Counter.Calls);
        Assert.Equal(2, peers.Count);
        var peer = peers.First();
        Assert.Equal(AttestationVariant.Simulated, peer.Variant);
        Assert.Equal(_node.Pcrs.Read(4), peer.Pcrs[4]);
        Assert.Equal(_node.Key.Fingerprint, peer.AttestationKeyFingerprint);
        Assert.Equal(2, nonces.Distinct().Count());
        Assert.True(_clientLogs.Contains("Attested peer role=server variant=simulated"), _clientLogs.Dump());
    }

    [Fact]
    public async Task Ping_SeveralCallsOnOneChannel_AttestsOncePerConnection()
    {
        await using var server = await ProbeServer.StartAsync(l => l.UseAtlsServer(_node.Issuer()), _serverLogs);
        var validated = 0;
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(server.Address, new Grpc.Net.Client.GrpcChannelOptions
        {
            HttpHandler = AtlsClient.CreateHandler(_node.Validator(_clientLogs), ClientOptions(_ => Interlocked.Increment(ref validated))),
        });
        var client = new Probe.Prober.ProberClient(channel);
        for (var i = 0; i < 3; i++)
        {
            await client.PingAsync(new Probe.PingRequest { Text = "x" });
        }
        Assert.Equal(3, server.Counter.Calls);
        Assert.Equal(1, validated);
    }

    [Fact]
    public async Task Ping_ConcurrentFreshConnections_AllAttestIndependently()
    {
        await using var server = await ProbeServer.StartAsync(l => l.UseAtlsServer(_node.Issuer()), _serverLogs);
        var validator = _node.Validator(_clientLogs);
        var peers = new ConcurrentBag<AtlsPeer>();

        await Task.WhenAll(Enumerable.Range(0, 8).Select(i => server.PingAsync(AtlsClient.CreateHandler(validator, ClientOptions(peers.Add)), $"p{i}")));

        Assert.Equal(8, server.Counter.Calls);
        Assert.Equal(8, peers.Count);
    }

    [Theory]
    [MemberData(nameof(Node.Refusals), MemberType = typeof(Node))]
    public async Task Ping_RefusedAttestation_NoCallReachesServiceAndReasonLogged(string scenario, AttestationFailure expected)
    {
        await using var server = await ProbeServer.StartAsync(l => l.UseAtlsServer(_node.Attack(scenario)), _serverLogs);
        var validated = false;

        var e = await Assert.ThrowsAsync<RpcException>(() =>
            server.PingAsync(AtlsClient.CreateHandler(_node.Validator(_clientLogs), ClientOptions(_ => validated = true))));

        Assert.Equal(expected, AtlsRefusedException.FindIn(e)?.Failure);
        Assert.Equal(0, server.Counter.Calls);
        Assert.False(validated);
        Assert.True(_clientLogs.Contains("Refused attested peer role=server variant=") && _clientLogs.Contains($"reason={expected}"), _clientLogs.Dump());
    }

    [Fact]
    public async Task Ping_WarnOnlyMismatch_ConnectsAndLogsWarning()
    {
        _node.Pcrs.MeasureEvent(1, "firmware update"u8);
        var measurements = new Measurements().With(1, Measurement.Zero(warnOnly: true)).WithZeroPcr15();
        await using var server = await ProbeServer.StartAsync(l => l.UseAtlsServer(_node.Issuer()), _serverLogs);
        AtlsPeer? peer = null;

        await server.PingAsync(AtlsClient.CreateHandler(_node.Validator(_clientLogs, measurements), ClientOptions(p => peer = p)));

        Assert.Equal(1, server.Counter.Calls);
        Assert.Contains("at index 1", Assert.Single(peer!.Warnings));
        Assert.True(_clientLogs.Contains("Encountered measurement warning role=server variant=simulated"), _clientLogs.Dump());
        Assert.True(_clientLogs.Contains("warning=untrusted measurement value"), _clientLogs.Dump());
    }

    [Fact]
    public async Task Ping_ValidatorHangs_RefusedAsTimeout()
    {
        await using var server = await ProbeServer.StartAsync(l => l.UseAtlsServer(_node.Issuer()), _serverLogs);
        var options = ClientOptions();
        options.ValidationTimeout = TimeSpan.FromMilliseconds(300);

        var e = await Assert.ThrowsAsync<RpcException>(() => server.PingAsync(AtlsClient.CreateHandler(new HangingValidator(), options)));

        Assert.Equal(AttestationFailure.Timeout, AtlsRefusedException.FindIn(e)?.Failure);
        Assert.Equal(0, server.Counter.Calls);
        Assert.True(_clientLogs.Contains("reason=Timeout"), _clientLogs.Dump());
    }

    [Fact]
    public async Task Ping_PlainTlsClientWithoutNonce_RefusedInHandshake()
    {
        await using var server = await ProbeServer.StartAsync(l => l.UseAtlsServer(_node.Issuer(), o => o.LoggerFactory = _serverLogs.Factory()), _serverLogs);
        var plain = new SocketsHttpHandler { SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, _, _, _) => true } };

        await Assert.ThrowsAsync<RpcException>(() => server.PingAsync(plain));

        Assert.Equal(0, server.Counter.Calls);
        Assert.True(_serverLogs.Contains("Refused TLS handshake reason=NoNonce"), _serverLogs.Dump());
    }
}
