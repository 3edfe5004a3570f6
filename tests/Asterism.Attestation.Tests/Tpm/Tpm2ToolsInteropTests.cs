using System.Diagnostics;
using System.Security.Cryptography;
using Asterism.Attestation.Tpm;
using Asterism.Tpm;

namespace Asterism.Attestation.Tests.Tpm;

/// <summary>Our validator accepts a tpm document assembled from tpm2-tools' own quote of the same key (its own swtpm).</summary>
public sealed class Tpm2ToolsInteropTests
{
    private const string AkAttributes = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign|noda";

    [Fact]
    public async Task Validate_DocumentFromTpm2QuoteOutput_AcceptedAndBoundToNonce()
    {
        var dir = Directory.CreateTempSubdirectory("asterism-tpm-tools-").FullName;
        try
        {
            await using var swtpm = await SwtpmProcess.StartAsync(Path.Combine(dir, "state"), CancellationToken.None);
            string fingerprint;
            await using (var session = await TpmAttestationSession.ConnectSwtpmAsync(swtpm.SocketPath, default, null, CancellationToken.None))
            {
                await session.Pcrs.MeasureEventAsync(4, "asterism-node binary"u8.ToArray(), CancellationToken.None);
                fingerprint = session.KeyFingerprint;
            }
            var userData = SHA256.HashData("tls key"u8);
            var nonce = RandomNumberGenerator.GetBytes(32);
            string F(string name) => Path.Combine(dir, name);
            await ToolAsync(swtpm.Tcti, "tpm2_createprimary", "-Q", "-C", "e", "-G", "ecc256:ecdsa-sha256:null", "-g", "sha256",
                "-a", AkAttributes, "-c", F("ak.ctx"), "-o", F("ak.pub"));
            try
            {
                await ToolAsync(swtpm.Tcti, "tpm2_quote", "-Q", "-c", F("ak.ctx"), "-l", "sha256:0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15",
                    "-q", Convert.ToHexString(TpmIssuer.QualifyingData(userData, nonce)), "-m", F("msg"), "-s", F("sig"),
                    "-o", F("pcrs"), "-F", "values", "-g", "sha256");
            }
            finally
            {
                await ToolAsync(swtpm.Tcti, "tpm2_flushcontext", "-t");
            }
            var pcrBytes = await File.ReadAllBytesAsync(F("pcrs"));
            var pcrs = Enumerable.Range(0, 16).Select(i => pcrBytes.AsSpan(i * 32, 32).ToArray()).ToArray();
            var payload = new TpmQuotePayload((await File.ReadAllBytesAsync(F("ak.pub")))[2..], await File.ReadAllBytesAsync(F("msg")), await File.ReadAllBytesAsync(F("sig")), pcrs);
            var document = new AttestationDocument("tpm", userData, nonce, payload.Encode()).Encode();
            var options = new TpmValidatorOptions { Measurements = new Measurements().With(4, new Measurement(pcrs[4])).WithZeroPcr15() };
            options.TrustedKeyFingerprints.Add(fingerprint);
            var validator = new TpmValidator(options);

            var verdict = validator.Validate(document, nonce);

            Assert.True(verdict.Accepted, verdict.ToString());
            Assert.Equal(fingerprint, verdict.Facts!.AttestationKeyFingerprint);
            Assert.Equal(AttestationFailure.NonceMismatch, validator.Validate(document, RandomNumberGenerator.GetBytes(32)).Failure);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task ToolAsync(string tcti, string tool, params string[] args)
    {
        var exe = new[] { "/usr/bin", "/usr/local/bin", "/bin" }.Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException($"{tool} is not installed: install the tpm2-tools package (apt-get install -y tpm2-tools)");
        var psi = new ProcessStartInfo(exe) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["TPM2TOOLS_TCTI"] = tcti;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        await stdout;
        Assert.True(p.ExitCode == 0, $"{tool} exited {p.ExitCode}: {await stderr}");
    }
}
