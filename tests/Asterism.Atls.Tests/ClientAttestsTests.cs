using System.Security.Cryptography;
using Asterism.Attestation;
using Grpc.Core;
using Microsoft.AspNetCore.Hosting;

namespace Asterism.Atls.Tests;

/// <summary>Rejoining node → JoinService: the client attests with the server's nonce from the CertificateRequest.</summary>
public sealed class ClientAttestsTests : IDisposable
{
    private readonly Node _node = new();
    private readonly CollectingLoggerProvider _serverLogs = new();

    public void Dispose() => _node.Dispose();

    private Task<ProbeServer> StartServerAsync(IAttestationValidator validator, TimeSpan? validationTimeout = null) =>
        ProbeServer.StartAsync(l => l.UseAtlsClientValidation(validator, o =>
        {
            o.LoggerFactory = _serverLogs.Factory();
            o.ValidationTimeout = validationTimeout ?? o.ValidationTimeout;
        }), _serverLogs);

    [Fact]
    public async Task Ping_AttestedClient_ServiceSeesPeer()
    {
        await using var server = await StartServerAsync(_node.Validator(_serverLogs));

        var reply = await server.PingAsync(AtlsClient.CreateAttestingHandler(_node.Issuer()));
        var second = await server.PingAsync(AtlsClient.CreateAttestingHandler(_node.Issuer()));

        Assert.Equal("simulated", reply.PeerVariant);
        Assert.Equal("simulated", second.PeerVariant);
        Assert.Equal(2, server.Counter.Calls);
        Assert.True(_serverLogs.Contains("Attested peer role=client variant=simulated"), _serverLogs.Dump());
    }

    [Fact]
    public async Task Ping_ConcurrentAttestingClients_AllAccepted()
    {
        await using var server = await StartServerAsync(_node.Validator(_serverLogs));

        var replies = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => server.PingAsync(AtlsClient.CreateAttestingHandler(_node.Issuer()), $"c{i}")));

        Assert.All(replies, r => Assert.Equal("simulated", r.PeerVariant));
        Assert.Equal(8, server.Counter.Calls);
    }

    [Theory]
    [MemberData(nameof(Node.Refusals), MemberType = typeof(Node))]
    public async Task Ping_RefusedAttestation_NoCallReachesServiceAndReasonLogged(string scenario, AttestationFailure expected)
    {
        await using var server = await StartServerAsync(_node.Validator(_serverLogs));

        await Assert.ThrowsAsync<RpcException>(() => server.PingAsync(AtlsClient.CreateAttestingHandler(_node.Attack(scenario))));

        Assert.Equal(0, server.Counter.Calls);
        Assert.True(_serverLogs.Contains("Refused attested peer role=client variant=") && _serverLogs.Contains($"reason={expected}"), _serverLogs.Dump());
    }

    [Fact]
    public async Task Ping_ClientWithoutCertificate_RefusedAsMissingExtension()
    {
        await using var server = await StartServerAsync(_node.Validator(_serverLogs));
        var plain = new SocketsHttpHandler { SslOptions = new() { RemoteCertificateValidationCallback = (_, _, _, _) => true } };

        await Assert.ThrowsAsync<RpcException>(() => server.PingAsync(plain));

        Assert.Equal(0, server.Counter.Calls);
        Assert.True(_serverLogs.Contains("reason=MissingExtension") && _serverLogs.Contains("peer presented no certificate"), _serverLogs.Dump());
    }

    [Fact]
    public async Task Ping_WarnOnlyMismatch_ConnectsAndLogsWarning()
    {
        _node.Pcrs.MeasureEvent(1, "firmware update"u8);
        var measurements = new Measurements().With(1, Measurement.Zero(warnOnly: true)).WithZeroPcr15();
        await using var server = await StartServerAsync(_node.Validator(_serverLogs, measurements));

        var reply = await server.PingAsync(AtlsClient.CreateAttestingHandler(_node.Issuer()));

        Assert.Equal("simulated", reply.PeerVariant);
        Assert.Equal(1, server.Counter.Calls);
        Assert.True(_serverLogs.Contains("Encountered measurement warning role=client variant=simulated"), _serverLogs.Dump());
    }

    [Fact]
    public async Task Ping_ValidatorHangs_RefusedAsTimeout()
    {
        await using var server = await StartServerAsync(new HangingValidator(), TimeSpan.FromMilliseconds(300));

        await Assert.ThrowsAsync<RpcException>(() => server.PingAsync(AtlsClient.CreateAttestingHandler(_node.Issuer())));

        Assert.Equal(0, server.Counter.Calls);
        Assert.True(_serverLogs.Contains("reason=Timeout"), _serverLogs.Dump());
    }

    [Fact]
    public async Task Ping_AttestingClientToPlainServer_RefusedBeforeRequest()
    {
        // A server that never asks for a client certificate must not receive the request either: the attesting
        // client insists on proving itself (fails closed towards a server that is not a JoinService).
        var issued = 0;
        var counting = new FuncIssuer(AttestationVariant.Simulated, (u, n) =>
        {
            Interlocked.Increment(ref issued);
            return _node.Issuer().Issue(u, n);
        });
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var plainCertificate = AtlsCertificate.Build(key, oid: null, document: null, DateTimeOffset.UtcNow);
        await using var server = await ProbeServer.StartAsync(l => l.UseHttps(plainCertificate), _serverLogs);

        var e = await Assert.ThrowsAsync<RpcException>(() => server.PingAsync(AtlsClient.CreateAttestingHandler(counting)));

        Assert.Equal(0, server.Counter.Calls);
        Assert.Equal(0, issued);
        Assert.Equal(AttestationFailure.MissingExtension, AtlsRefusedException.FindIn(e)?.Failure);
    }

    [Fact]
    public async Task Ping_ServerRequestsCertificateWithoutNonce_ClientRefusesToAttest()
    {
        var issued = 0;
        var counting = new FuncIssuer(AttestationVariant.Simulated, (u, n) =>
        {
            Interlocked.Increment(ref issued);
            return _node.Issuer().Issue(u, n);
        });
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var certificate = AtlsCertificate.Build(key, oid: null, document: null, DateTimeOffset.UtcNow);
        await using var server = await ProbeServer.StartAsync(l => l.UseHttps(h =>
        {
            h.ServerCertificate = certificate;
            h.ClientCertificateMode = Microsoft.AspNetCore.Server.Kestrel.Https.ClientCertificateMode.RequireCertificate;
            h.AllowAnyClientCertificate();
        }), _serverLogs);

        var e = await Assert.ThrowsAsync<RpcException>(() => server.PingAsync(AtlsClient.CreateAttestingHandler(counting)));

        Assert.Equal(0, server.Counter.Calls);
        Assert.Equal(0, issued);
        Assert.Equal(AttestationFailure.MissingExtension, AtlsRefusedException.FindIn(e)?.Failure);
    }
}
