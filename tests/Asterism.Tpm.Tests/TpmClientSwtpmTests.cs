using System.Security.Cryptography;

namespace Asterism.Tpm.Tests;

/// <summary>The client's commands against a real swtpm.</summary>
public sealed class TpmClientSwtpmTests : IAsyncLifetime
{
    private TestSwtpm _swtpm = null!;
    private TpmClient _client = null!;

    public async Task InitializeAsync()
    {
        _swtpm = await TestSwtpm.StartAsync();
        _client = await _swtpm.ConnectAsync();
    }

    public async Task DisposeAsync()
    {
        await _client.DisposeAsync();
        await _swtpm.DisposeAsync();
    }

    [Fact]
    public async Task Startup_AlreadyStarted_ReturnsFalse()
    {
        Assert.False(await _client.StartupAsync(TpmStartupType.Clear, CancellationToken.None));
    }

    [Fact]
    public async Task Commands_ConcurrentCallers_SerialisedOverOneConnection()
    {
        var tasks = Enumerable.Range(0, 40).Select(async i =>
        {
            if (i % 2 == 0)
            {
                return (await _client.GetRandomAsync(48, CancellationToken.None)).Length;
            }
            return (await _client.PcrReadAsync(Enumerable.Range(0, 12), CancellationToken.None)).Count;
        });
        var results = await Task.WhenAll(tasks);
        Assert.All(results.Where((_, i) => i % 2 == 0), n => Assert.Equal(48, n));
        Assert.All(results.Where((_, i) => i % 2 == 1), n => Assert.Equal(12, n));
    }

    [Fact]
    public async Task Transmit_CancelledBeforeSending_ClientStillUsable()
    {
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => _client.GetRandomAsync(8, cts.Token));
        Assert.Equal(8, (await _client.GetRandomAsync(8, CancellationToken.None)).Length);
    }

    [Fact]
    public async Task GetRandom_MoreThanOneDigest_LoopsToFullLength()
    {
        var a = await _client.GetRandomAsync(100, CancellationToken.None);
        var b = await _client.GetRandomAsync(100, CancellationToken.None);
        Assert.Equal(100, a.Length);
        Assert.False(a.AsSpan().SequenceEqual(b));
    }

    [Fact]
    public async Task PcrExtend_Sha256Digest_FollowsExtendSemantics()
    {
        var digest = SHA256.HashData("boot component"u8);
        var before = (await _client.PcrReadAsync([16], CancellationToken.None))[16];
        await _client.PcrExtendAsync(16, digest, CancellationToken.None);
        var after = (await _client.PcrReadAsync([16], CancellationToken.None))[16];
        Assert.Equal(SHA256.HashData([.. before, .. digest]), after);
    }

    [Fact]
    public async Task PcrEvent_Data_ExtendsWithHashOfData()
    {
        var data = "cluster id"u8.ToArray();
        var before = (await _client.PcrReadAsync([15], CancellationToken.None))[15];
        var reported = await _client.PcrEventAsync(15, data, CancellationToken.None);
        var after = (await _client.PcrReadAsync([15], CancellationToken.None))[15];
        Assert.Equal(SHA256.HashData(data), reported);
        Assert.Equal(SHA256.HashData([.. before, .. SHA256.HashData(data)]), after);
    }

    [Fact]
    public async Task PcrRead_All24_LoopsPastEightPerResponse()
    {
        await _client.PcrExtendAsync(23, new byte[32], CancellationToken.None);
        var all = await _client.PcrReadAsync(Enumerable.Range(0, 24), CancellationToken.None);
        Assert.Equal(Enumerable.Range(0, 24), all.Keys);
        Assert.All(all.Values, v => Assert.Equal(32, v.Length));
        Assert.NotEqual(new byte[32], all[23]);
    }

    [Fact]
    public async Task TpmPcrs_LargeEvent_SameValueAsEventSemantics()
    {
        var pcrs = new TpmPcrs(_client);
        var data = new byte[5000];
        RandomNumberGenerator.Fill(data);
        var before = await pcrs.ReadAsync(14, CancellationToken.None);
        await pcrs.MeasureEventAsync(14, data, CancellationToken.None);
        Assert.Equal(SHA256.HashData([.. before, .. SHA256.HashData(data)]), await pcrs.ReadAsync(14, CancellationToken.None));
    }

    [Fact]
    public async Task Quote_WithAttestationKey_VerifiesWithParsedPublicKey()
    {
        await using var ak = await TpmAttestationKey.CreateAsync(_client, TpmHierarchy.Endorsement, default, CancellationToken.None);
        await _client.PcrExtendAsync(15, SHA256.HashData("x"u8), CancellationToken.None);
        var nonce = RandomNumberGenerator.GetBytes(32);
        var quote = await ak.QuoteAsync(nonce, [0, 15, 16], CancellationToken.None);

        var publicKey = TpmEccPublicKey.Parse(ak.PublicKey.PublicArea);
        var result = TpmQuoteVerifier.Verify(publicKey, quote.Attest, quote.Signature, nonce, quote.Pcrs);

        Assert.True(result.IsValid, result.ToString());
        Assert.Equal(nonce, result.Attestation!.ExtraData);
        Assert.Equal([0, 15, 16], result.Attestation.PcrSelections[0].Indices);
        Assert.Equal(TpmQuoteStatus.ExtraDataMismatch, TpmQuoteVerifier.Verify(publicKey, quote.Attest, quote.Signature, new byte[32], quote.Pcrs).Status);
    }

    [Fact]
    public async Task CreatePrimary_FiveTimesWithDispose_FlushFreesTheThreeSlots()
    {
        byte[]? first = null;
        for (var i = 0; i < 5; i++)
        {
            await using var ak = await TpmAttestationKey.CreateAsync(_client, TpmHierarchy.Endorsement, default, CancellationToken.None);
            first ??= ak.PublicKey.PublicArea.ToArray();
            Assert.Equal(first, ak.PublicKey.PublicArea.ToArray());
        }
    }

    [Fact]
    public async Task CreatePrimary_WithoutFlush_RunsOutOfSlotsWithReadableError()
    {
        var handles = new List<uint>();
        try
        {
            var e = await Assert.ThrowsAsync<TpmException>(async () =>
            {
                for (var i = 0; i < 10; i++)
                {
                    var created = await _client.CreatePrimaryAsync(TpmHierarchy.Owner, TpmAttestationKey.Template(), default, CancellationToken.None);
                    handles.Add(created.Handle);
                }
            });
            Assert.Equal(TpmCommandCode.CreatePrimary, e.Command);
            Assert.Equal(0x902u, e.ResponseCode!.Value.Value);
            Assert.Contains("TPM_RC_OBJECT_MEMORY (0x902)", e.Message);
            Assert.InRange(handles.Count, 1, 3);
        }
        finally
        {
            foreach (var h in handles)
            {
                await _client.FlushContextAsync(h, CancellationToken.None);
            }
        }
    }

    [Fact]
    public async Task ReadPublic_AttestationKey_MatchesCreatePrimary()
    {
        await using var ak = await TpmAttestationKey.CreateAsync(_client, TpmHierarchy.Endorsement, default, CancellationToken.None);
        var pub = await _client.ReadPublicAsync(ak.Handle, CancellationToken.None);
        Assert.Equal(ak.PublicKey.PublicArea.ToArray(), pub.PublicArea);
        Assert.Equal(ak.PublicKey.ComputeName(), pub.Name);
    }

    [Fact]
    public async Task Hierarchies_OwnerAndEndorsement_GiveDifferentKeys()
    {
        await using var e = await TpmAttestationKey.CreateAsync(_client, TpmHierarchy.Endorsement, default, CancellationToken.None);
        await using var o = await TpmAttestationKey.CreateAsync(_client, TpmHierarchy.Owner, default, CancellationToken.None);
        Assert.NotEqual(e.PublicKey.X, o.PublicKey.X);
    }

    [Fact]
    public async Task FlushContext_UnknownHandle_ThrowsDecodedError()
    {
        var e = await Assert.ThrowsAsync<TpmException>(() => _client.FlushContextAsync(0x80000042, CancellationToken.None));
        Assert.Equal(TpmCommandCode.FlushContext, e.Command);
        Assert.True(e.ResponseCode!.Value.IsFormatOne);
        Assert.Contains("TPM2_FlushContext failed: TPM_RC_", e.Message);
    }

    [Fact]
    public async Task CreatePrimary_WrongHierarchyPassword_ThrowsAuthFailureOnSession1()
    {
        var e = await Assert.ThrowsAsync<TpmException>(() =>
            _client.CreatePrimaryAsync(TpmHierarchy.Owner, TpmAttestationKey.Template(), "wrong"u8.ToArray(), CancellationToken.None));
        Assert.Equal(1, e.ResponseCode!.Value.Session);
        Assert.Contains("on session 1", e.Message);
    }
}
