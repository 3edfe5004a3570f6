using System.Globalization;
using System.Security.Cryptography;

namespace Asterism.Tpm.Tests;

/// <summary>Cross-checks with tpm2-tools against the same swtpm (tools and our client take turns on the one connection).</summary>
public sealed class Tpm2ToolsInteropTests : IAsyncLifetime
{
    private const string AkAttributes = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign|noda";
    private static readonly int[] QuotedPcrs = [0, 7, 15, 16];

    private TestSwtpm _swtpm = null!;

    public async Task InitializeAsync() => _swtpm = await TestSwtpm.StartAsync();

    public async Task DisposeAsync() => await _swtpm.DisposeAsync();

    [Fact]
    public async Task Checkquote_QuoteFromOurClient_Accepted()
    {
        var nonce = RandomNumberGenerator.GetBytes(32);
        TpmQuote quote;
        string pem;
        await using (var client = await _swtpm.ConnectAsync())
        {
            await client.PcrExtendAsync(16, SHA256.HashData("measured"u8), CancellationToken.None);
            await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, default, CancellationToken.None);
            quote = await ak.QuoteAsync(nonce, QuotedPcrs, CancellationToken.None);
            pem = ak.PublicKey.ExportPem();
        }
        await File.WriteAllTextAsync(_swtpm.PathOf("ak.pem"), pem);
        await File.WriteAllBytesAsync(_swtpm.PathOf("msg"), quote.Attest);
        await File.WriteAllBytesAsync(_swtpm.PathOf("sig"), quote.Signature);
        // tpm2_checkquote -f takes raw PCR values (the "values" format) when -l names the selection.
        await File.WriteAllBytesAsync(_swtpm.PathOf("pcrs"), [.. QuotedPcrs.SelectMany(i => quote.Pcrs[i])]);

        var (code, _, stderr) = await CheckquoteAsync(nonce, "pcrs");
        Assert.True(code == 0, stderr);

        var tampered = quote.Pcrs[16].ToArray();
        tampered[0] ^= 1;
        await File.WriteAllBytesAsync(_swtpm.PathOf("pcrs-bad"), [.. QuotedPcrs.SelectMany(i => i == 16 ? tampered : quote.Pcrs[i])]);
        var (badCode, _, _) = await CheckquoteAsync(nonce, "pcrs-bad");
        Assert.NotEqual(0, badCode);
    }

    [Fact]
    public async Task Verify_QuoteFromTpm2Quote_SameKeyAccepted()
    {
        TpmEccPublicKey ourKey;
        await using (var client = await _swtpm.ConnectAsync())
        {
            await client.PcrExtendAsync(15, SHA256.HashData("cluster"u8), CancellationToken.None);
            await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, default, CancellationToken.None);
            ourKey = ak.PublicKey;
        }
        var tcti = _swtpm.Process.Tcti;
        await Tpm2Tools.RunOkAsync(tcti, "tpm2_createprimary", "-Q", "-C", "e", "-G", "ecc256:ecdsa-sha256:null", "-g", "sha256",
            "-a", AkAttributes, "-c", _swtpm.PathOf("ak.ctx"), "-o", _swtpm.PathOf("ak.pub"));
        var nonce = RandomNumberGenerator.GetBytes(32);
        try
        {
            await Tpm2Tools.RunOkAsync(tcti, "tpm2_quote", "-Q", "-c", _swtpm.PathOf("ak.ctx"), "-l", "sha256:" + string.Join(',', QuotedPcrs),
                "-q", Convert.ToHexString(nonce), "-m", _swtpm.PathOf("msg"), "-s", _swtpm.PathOf("sig"),
                "-o", _swtpm.PathOf("pcrs"), "-F", "values", "-g", "sha256");
        }
        finally
        {
            await Tpm2Tools.RunOkAsync(tcti, "tpm2_flushcontext", "-t");
        }

        // tpm2_createprimary -o writes TPM2B_PUBLIC: the same key as ours means the same TPMT_PUBLIC bytes.
        var toolsPublic = await File.ReadAllBytesAsync(_swtpm.PathOf("ak.pub"));
        Assert.Equal(ourKey.PublicArea.ToArray(), toolsPublic.AsSpan(2).ToArray());
        Assert.Equal(ourKey.ComputeName(), TpmEccPublicKey.ParseSized(toolsPublic).ComputeName());

        var pcrBytes = await File.ReadAllBytesAsync(_swtpm.PathOf("pcrs"));
        Assert.Equal(32 * QuotedPcrs.Length, pcrBytes.Length);
        var values = QuotedPcrs.Select((pcr, n) => (pcr, pcrBytes.AsSpan(n * 32, 32).ToArray())).ToDictionary(p => p.pcr, p => p.Item2);
        var attest = await File.ReadAllBytesAsync(_swtpm.PathOf("msg"));
        var signature = await File.ReadAllBytesAsync(_swtpm.PathOf("sig"));

        var result = TpmQuoteVerifier.Verify(ourKey, attest, signature, nonce, values);

        Assert.True(result.IsValid, result.ToString());
        Assert.Equal(TpmQuoteStatus.ExtraDataMismatch, TpmQuoteVerifier.Verify(ourKey, attest, signature, new byte[32], values).Status);
        values[15] = new byte[32];
        Assert.Equal(TpmQuoteStatus.PcrDigestMismatch, TpmQuoteVerifier.Verify(ourKey, attest, signature, nonce, values).Status);
    }

    [Fact]
    public async Task PcrRead_AfterExtendsAndEvents_MatchesTpm2Pcrread()
    {
        int[] pcrs = [8, 9, 10, 11, 12, 13, 14, 15, 16, 23];
        SortedDictionary<int, byte[]> ours;
        await using (var client = await _swtpm.ConnectAsync())
        {
            var bank = new TpmPcrs(client);
            foreach (var i in pcrs)
            {
                await bank.ExtendAsync(i, SHA256.HashData(BitConverter.GetBytes(i)), CancellationToken.None);
                await bank.MeasureEventAsync(i, "event"u8.ToArray(), CancellationToken.None);
            }
            ours = await client.PcrReadAsync(pcrs, CancellationToken.None);
        }
        var text = await Tpm2Tools.RunOkAsync(_swtpm.Process.Tcti, "tpm2_pcrread", "sha256:" + string.Join(',', pcrs));
        foreach (var i in pcrs)
        {
            var line = text.Split('\n').Single(l => l.Trim().StartsWith(i.ToString(CultureInfo.InvariantCulture) + " ", StringComparison.Ordinal)
                || l.Trim().StartsWith(i.ToString(CultureInfo.InvariantCulture) + ":", StringComparison.Ordinal));
            Assert.EndsWith("0x" + Convert.ToHexString(ours[i]), line.Trim());
        }
    }

    [Fact]
    public async Task Quote_DaKeyFirstUseAfterStartup_RetryAnsweredTransparently()
    {
        var template = TpmAttestationKey.Template();
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(template.AsSpan(4), (uint)(TpmAttestationKey.KeyAttributes & ~TpmObjectAttributes.NoDa));
        var recording = new RecordingTransport(await SwtpmSocketTransport.ConnectAsync(_swtpm.Process.SocketPath, 8192, CancellationToken.None));
        await using var client = new TpmClient(recording);
        var key = await client.CreatePrimaryAsync(TpmHierarchy.Owner, template, default, CancellationToken.None);
        var quote = await client.QuoteAsync(key.Handle, default, new byte[32], TpmPcrSelection.Sha256([0]), CancellationToken.None);
        await client.FlushContextAsync(key.Handle, CancellationToken.None);

        var codes = Enumerable.Range(0, recording.Exchanges.Count).Select(recording.ResponseCodeOf).ToList();
        Assert.Contains(TpmResponseCode.Retry, codes);
        Assert.Equal(0u, codes[^2]);
        Assert.NotEmpty(quote.Attest);
    }

    private Task<(int, string, string)> CheckquoteAsync(byte[] nonce, string pcrFile) =>
        Tpm2Tools.RunAsync(null, "tpm2_checkquote", "-u", _swtpm.PathOf("ak.pem"), "-m", _swtpm.PathOf("msg"), "-s", _swtpm.PathOf("sig"),
            "-f", _swtpm.PathOf(pcrFile), "-l", "sha256:" + string.Join(',', QuotedPcrs), "-g", "sha256", "-q", Convert.ToHexString(nonce));
}
