using System.Security.Cryptography;
using Asterism.Attestation;
using Grpc.Core;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace Asterism.Atls.Tests;

/// <summary>Joining node → JoinService: both ends attest in one handshake (UseAtlsMutual, CreateMutualHandler).</summary>
public sealed class MutualAttestsTests : IDisposable
{
    private readonly Node _server = new();
    private readonly Node _client = new();
    private readonly CollectingLoggerProvider _serverLogs = new();
    private readonly CollectingLoggerProvider _clientLogs = new();
    private int _clientIssued;

    public void Dispose()
    {
        _server.Dispose();
        _client.Dispose();
    }

    /// <summary>The joining node's issuer, counting what it hands out.</summary>
    private FuncIssuer ClientIssuer(IAttestationIssuer? inner = null)
    {
        var issuer = inner ?? _client.Issuer();
        return new FuncIssuer(issuer.Variant, (userData, nonce) =>
        {
            Interlocked.Increment(ref _clientIssued);
            return issuer.IssueAsync(userData, nonce, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        });
    }

    private AtlsClientOptions ClientOptions(Action<AtlsPeer>? onValidated = null) =>
        new() { LoggerFactory = _clientLogs.Factory(), OnValidated = onValidated };

    private Task<ProbeServer> StartMutualAsync(IAttestationIssuer? serverIssuer = null) =>
        ProbeServer.StartAsync(l => l.UseAtlsMutual(serverIssuer ?? _server.Issuer(), _client.Validator(_serverLogs), o => o.LoggerFactory = _serverLogs.Factory()), _serverLogs);

    [Fact]
    public async Task Ping_BothAttested_EachSeesTheOther()
    {
        await using var server = await StartMutualAsync();
        AtlsPeer? serverPeer = null;

        var reply = await server.PingAsync(AtlsClient.CreateMutualHandler(ClientIssuer(), _server.Validator(_clientLogs), ClientOptions(p => serverPeer = p)));
        await server.PingAsync(AtlsClient.CreateMutualHandler(ClientIssuer(), _server.Validator(_clientLogs), ClientOptions()));

        Assert.Equal("simulated", reply.PeerVariant);
        Assert.Matches(@"^Tls13 \S+ [0-9a-f]{32}\.[0-9a-f]{32}\.atls$", reply.Tls);
        Assert.Equal(2, server.Counter.Calls);
        Assert.Equal(2, _clientIssued);
        Assert.Equal(_server.Key.Fingerprint, serverPeer!.AttestationKeyFingerprint);
        Assert.Equal(_server.Pcrs.Read(4), serverPeer.Pcrs[4]);
        Assert.True(_serverLogs.Contains("Attested peer role=client variant=simulated"), _serverLogs.Dump());
        Assert.True(_clientLogs.Contains("Attested peer role=server variant=simulated"), _clientLogs.Dump());
    }

    [Fact]
    public async Task Ping_ConcurrentMutualClients_AllAccepted()
    {
        await using var server = await StartMutualAsync();
        var validator = _server.Validator(_clientLogs);

        var replies = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => server.PingAsync(AtlsClient.CreateMutualHandler(ClientIssuer(), validator), $"m{i}")));

        Assert.All(replies, r => Assert.Equal("simulated", r.PeerVariant));
        Assert.Equal(8, server.Counter.Calls);
    }

    [Theory]
    [MemberData(nameof(Node.Refusals), MemberType = typeof(Node))]
    public async Task Ping_ServerFailsClientValidation_NoRequestAndNothingIssued(string scenario, AttestationFailure expected)
    {
        await using var server = await StartMutualAsync(_server.Attack(scenario));
        var validated = false;

        var e = await Assert.ThrowsAsync<RpcException>(() =>
            server.PingAsync(AtlsClient.CreateMutualHandler(ClientIssuer(), _server.Validator(_clientLogs), ClientOptions(_ => validated = true))));

        Assert.Equal(expected, AtlsRefusedException.FindIn(e)?.Failure);
        Assert.Equal(0, server.Counter.Calls);
        // A server the client does not trust gets no document from it either.
        Assert.Equal(0, _clientIssued);
        Assert.False(validated);
        Assert.True(_clientLogs.Contains("Refused attested peer role=server variant=") && _clientLogs.Contains($"reason={expected}"), _clientLogs.Dump());
    }

    [Theory]
    [MemberData(nameof(Node.Refusals), MemberType = typeof(Node))]
    public async Task Ping_ClientFailsServerValidation_NoCallReachesService(string scenario, AttestationFailure expected)
    {
        await using var server = await StartMutualAsync();

        await Assert.ThrowsAsync<RpcException>(() => server.PingAsync(AtlsClient.CreateMutualHandler(_client.Attack(scenario), _server.Validator(_clientLogs))));

        Assert.Equal(0, server.Counter.Calls);
        Assert.True(_serverLogs.Contains("Refused attested peer role=client variant=") && _serverLogs.Contains($"reason={expected}"), _serverLogs.Dump());
    }

    [Fact]
    public async Task Ping_ServerReplaysOneAttestedCertificate_RefusedAsNonceMismatch()
    {
        // A squatter that recorded a genuine JoinService certificate (document and key) presents it on every connection,
        // asking for the client's certificate with a nonce of its own.
        using var replayed = await AtlsCertificate.CreateAsync(_server.Issuer(), AtlsNonce.Create(), DateTimeOffset.UtcNow, CancellationToken.None);
        using var authorityKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var authority = AtlsNonce.CreateAuthority(AtlsNonce.Create(), authorityKey, DateTimeOffset.UtcNow);
        await using var server = await ProbeServer.StartAsync(l => l.UseHttps(new TlsHandshakeCallbackOptions
        {
            OnConnection = _ => ValueTask.FromResult(new System.Net.Security.SslServerAuthenticationOptions
            {
                ServerCertificateContext = System.Net.Security.SslStreamCertificateContext.Create(replayed, null, offline: true,
                    System.Net.Security.SslCertificateTrust.CreateForX509Collection([authority], sendTrustInHandshake: true)),
                ClientCertificateRequired = true,
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
            }),
        }), _serverLogs);

        var e = await Assert.ThrowsAsync<RpcException>(() => server.PingAsync(AtlsClient.CreateMutualHandler(ClientIssuer(), _server.Validator(_clientLogs))));

        Assert.Equal(AttestationFailure.NonceMismatch, AtlsRefusedException.FindIn(e)?.Failure);
        Assert.Equal(0, server.Counter.Calls);
        Assert.Equal(0, _clientIssued);
    }

    [Fact]
    public async Task Ping_ServerWithStaticCertificate_RefusedAsMissingExtension()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var certificate = AtlsCertificate.Build(key, oid: null, document: null, DateTimeOffset.UtcNow);
        await using var server = await ProbeServer.StartAsync(l => l.UseHttps(h =>
        {
            h.ServerCertificate = certificate;
            h.ClientCertificateMode = ClientCertificateMode.RequireCertificate;
            h.AllowAnyClientCertificate();
        }), _serverLogs);

        var e = await Assert.ThrowsAsync<RpcException>(() => server.PingAsync(AtlsClient.CreateMutualHandler(ClientIssuer(), _server.Validator(_clientLogs))));

        Assert.Equal(AttestationFailure.MissingExtension, AtlsRefusedException.FindIn(e)?.Failure);
        Assert.Equal(0, server.Counter.Calls);
        Assert.Equal(0, _clientIssued);
    }

    [Fact]
    public async Task Ping_AttestedServerThatDoesNotAskClientToAttest_Refused()
    {
        // A server-attests listener proves itself but does not check the client: not a JoinService the node may use.
        await using var server = await ProbeServer.StartAsync(l => l.UseAtlsServer(_server.Issuer()), _serverLogs);

        var e = await Assert.ThrowsAsync<RpcException>(() => server.PingAsync(AtlsClient.CreateMutualHandler(ClientIssuer(), _server.Validator(_clientLogs))));

        Assert.Equal(AttestationFailure.MissingExtension, AtlsRefusedException.FindIn(e)?.Failure);
        Assert.Equal(0, server.Counter.Calls);
    }

    [Fact]
    public async Task Ping_ClientThatOnlyValidates_RefusedAsMissingExtension()
    {
        await using var server = await StartMutualAsync();

        await Assert.ThrowsAsync<RpcException>(() => server.PingAsync(AtlsClient.CreateHandler(_server.Validator(_clientLogs))));

        Assert.Equal(0, server.Counter.Calls);
        Assert.True(_serverLogs.Contains("reason=MissingExtension") && _serverLogs.Contains("peer presented no certificate"), _serverLogs.Dump());
    }
}
