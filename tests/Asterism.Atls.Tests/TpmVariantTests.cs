using System.Security.Cryptography;
using Asterism.Attestation;
using Asterism.Attestation.Tpm;
using Asterism.Tpm;
using Grpc.Core;

namespace Asterism.Atls.Tests;

/// <summary>aTLS with the tpm variant over real Kestrel, quotes from a real swtpm started (and stopped by PID) here.</summary>
public sealed class TpmVariantTests : IAsyncLifetime
{
    private readonly CollectingLoggerProvider _serverLogs = new();
    private readonly CollectingLoggerProvider _clientLogs = new();
    private string _dir = "";
    private SwtpmProcess _swtpm = null!;
    private TpmAttestationSession _tpm = null!;

    public async Task InitializeAsync()
    {
        _dir = Directory.CreateTempSubdirectory("asterism-atls-tpm-").FullName;
        _swtpm = await SwtpmProcess.StartAsync(_dir, CancellationToken.None);
        _tpm = await TpmAttestationSession.ConnectSwtpmAsync(_swtpm.SocketPath, default, null, CancellationToken.None);
        await _tpm.Pcrs.MeasureEventAsync(4, "asterism-node binary"u8.ToArray(), CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _tpm.DisposeAsync();
        await _swtpm.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private async Task<IAttestationValidator> ValidatorAsync(CollectingLoggerProvider logs, byte[]? expectedPcr4 = null) =>
        new AttestationPolicy
        {
            Variant = AttestationVariant.Tpm,
            Measurements = new Measurements().With(4, new Measurement(expectedPcr4 ?? await _tpm.Pcrs.ReadAsync(4, CancellationToken.None))).WithZeroPcr15(),
            TrustedKeys = [_tpm.KeyFingerprint],
        }.CreateValidator(logs.Factory());

    [Fact]
    public async Task Ping_TpmAttestedServer_ClientSeesQuotedPcrs()
    {
        await using var server = await ProbeServer.StartAsync(l => l.UseAtlsServer(_tpm.Issuer), _serverLogs);
        AtlsPeer? peer = null;

        var reply = await server.PingAsync(AtlsClient.CreateHandler(await ValidatorAsync(_clientLogs), new AtlsClientOptions { LoggerFactory = _clientLogs.Factory(), OnValidated = p => peer = p }));

        Assert.Equal("hello", reply.Text);
        Assert.Equal(AttestationVariant.Tpm, peer!.Variant);
        Assert.Equal(await _tpm.Pcrs.ReadAsync(4, CancellationToken.None), peer.Pcrs[4]);
        Assert.Equal(_tpm.KeyFingerprint, peer.AttestationKeyFingerprint);
        Assert.True(_clientLogs.Contains("Attested peer role=server variant=tpm"), _clientLogs.Dump());
    }

    [Fact]
    public async Task Ping_TpmAttestedClient_ServiceSeesTpmPeer()
    {
        var validator = await ValidatorAsync(_serverLogs);
        await using var server = await ProbeServer.StartAsync(l => l.UseAtlsClientValidation(validator, o => o.LoggerFactory = _serverLogs.Factory()), _serverLogs);

        var reply = await server.PingAsync(AtlsClient.CreateAttestingHandler(_tpm.Issuer));

        Assert.Equal("tpm", reply.PeerVariant);
        Assert.Equal(1, server.Counter.Calls);
    }

    [Fact]
    public async Task Ping_ServerWithOtherBinary_RefusedNamingIndexAndNoCall()
    {
        await using var server = await ProbeServer.StartAsync(l => l.UseAtlsServer(_tpm.Issuer), _serverLogs);
        var validator = await ValidatorAsync(_clientLogs, SHA256.HashData("the expected binary"u8));

        var e = await Assert.ThrowsAsync<RpcException>(() => server.PingAsync(AtlsClient.CreateHandler(validator, new AtlsClientOptions { LoggerFactory = _clientLogs.Factory() })));

        var refused = AtlsRefusedException.FindIn(e);
        Assert.Equal(AttestationFailure.MeasurementMismatch, refused?.Failure);
        Assert.Equal(0, server.Counter.Calls);
        Assert.True(_clientLogs.Contains("reason=MeasurementMismatch") && _clientLogs.Contains("at index 4"), _clientLogs.Dump());
    }

    [Fact]
    public async Task Ping_ReplayedTpmQuote_RefusedAsNonceMismatch()
    {
        var recorded = await _tpm.Issuer.IssueAsync(new byte[32], RandomNumberGenerator.GetBytes(32), CancellationToken.None);
        var replaying = new FuncIssuer(AttestationVariant.Tpm, (_, _) => recorded);
        await using var server = await ProbeServer.StartAsync(l => l.UseAtlsServer(replaying), _serverLogs);
        var validator = await ValidatorAsync(_clientLogs);

        var e = await Assert.ThrowsAsync<RpcException>(() => server.PingAsync(AtlsClient.CreateHandler(validator, new AtlsClientOptions { LoggerFactory = _clientLogs.Factory() })));

        Assert.Equal(AttestationFailure.NonceMismatch, AtlsRefusedException.FindIn(e)?.Failure);
        Assert.Equal(0, server.Counter.Calls);
    }
}
