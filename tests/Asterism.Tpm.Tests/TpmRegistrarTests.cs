using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Xunit.Abstractions;

namespace Asterism.Tpm.Tests;

/// <summary>Two TPMs manufactured by one CA (EK certificates via swtpm_setup), endorsement auth set on both, and a second CA.</summary>
public sealed class ManufacturedTpmsFixture : ManufacturedTpmPair
{
    public SwtpmManufacturer OtherManufacturer { get; private set; } = null!;

    protected override TpmEkType EkType => TpmEkType.Rsa;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        OtherManufacturer = SwtpmManufacturer.LoadOrCreate(Path.Combine(Directory, "other-manufacturer"), "Someone else");
    }
}

/// <summary>AK certification by credential activation against real swtpms: the happy path, each refusal, and tpm2-tools interop.</summary>
public sealed class TpmRegistrarTests(ManufacturedTpmsFixture tpms, ITestOutputHelper output) : IClassFixture<ManufacturedTpmsFixture>
{
    private readonly CountingRegistrars _registrars = new();

    [Fact]
    public async Task Register_AkInManufacturedTpm_CertifiedWithAkAsSubjectKey()
    {
        await using var client = await tpms.TpmA.ConnectAsync(null, CancellationToken.None);
        await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, tpms.AuthA, CancellationToken.None);
        var registrar = Registrar(tpms.Manufacturer);

        var watch = Stopwatch.StartNew();
        var result = await registrar.RegisterAsync(client, ak, tpms.AuthA, CancellationToken.None);
        watch.Stop();

        Assert.True(result.IsCertified, result.Reason);
        Assert.Equal(1, _registrars.Certified);
        using var identity = X509CertificateLoader.LoadCertificate(result.IdentityCertificate!);
        Assert.Equal(ak.PublicKey.ExportSubjectPublicKeyInfo(), identity.PublicKey.ExportSubjectPublicKeyInfo());
        output.WriteLine($"swtpm_setup {tpms.ManufactureTime.TotalMilliseconds:F0} ms; registration (NV read, chain, MakeCredential, activation) {watch.Elapsed.TotalMilliseconds:F1} ms");
    }

    [Fact]
    public async Task Register_EkCertificateFromAnotherCa_RefusedBeforeActivation()
    {
        await using var client = await tpms.TpmA.ConnectAsync(null, CancellationToken.None);
        await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, tpms.AuthA, CancellationToken.None);

        var result = await Registrar(tpms.OtherManufacturer).RegisterAsync(client, ak, tpms.AuthA, CancellationToken.None);

        Assert.Equal(TpmRegistrationStatus.EkCertificateUntrusted, result.Status);
        Assert.Null(result.IdentityCertificate);
        Assert.Equal(0, _registrars.Certified);
    }

    [Fact]
    public async Task Register_AkFromAnotherTpm_ActivationFails()
    {
        // The claim: "this AK (from TPM A) lives next to TPM B's certified EK". TPM B can only activate for its own AK.
        TpmEccPublicKey foreignAk;
        await using (var clientA = await tpms.TpmA.ConnectAsync(null, CancellationToken.None))
        {
            await using var akA = await TpmAttestationKey.CreateAsync(clientA, TpmHierarchy.Endorsement, tpms.AuthA, CancellationToken.None);
            foreignAk = akA.PublicKey;
        }
        await using var clientB = await tpms.TpmB.ConnectAsync(null, CancellationToken.None);
        await using var akB = await TpmAttestationKey.CreateAsync(clientB, TpmHierarchy.Endorsement, tpms.AuthB, CancellationToken.None);

        var result = await Registrar(tpms.Manufacturer).RegisterAsync(clientB, foreignAk, tpms.AuthB,
            (ek, credential, ct) => TpmRegistrar.ActivateAsync(clientB, akB.Handle, ek, tpms.AuthB, credential, ct), CancellationToken.None);

        Assert.Equal(TpmRegistrationStatus.ActivationFailed, result.Status);
        Assert.Contains("TPM_RC_INTEGRITY", result.Reason, StringComparison.Ordinal);
        Assert.Equal(0, _registrars.Certified);
    }

    [Fact]
    public async Task Register_TpmReturnsWrongSecret_Refused()
    {
        await using var client = await tpms.TpmA.ConnectAsync(null, CancellationToken.None);
        await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, tpms.AuthA, CancellationToken.None);

        var result = await Registrar(tpms.Manufacturer).RegisterAsync(client, ak.PublicKey, tpms.AuthA,
            (_, _, _) => Task.FromResult(RandomNumberGenerator.GetBytes(32)), CancellationToken.None);

        Assert.Equal(TpmRegistrationStatus.SecretMismatch, result.Status);
        Assert.Equal(0, _registrars.Certified);
    }

    [Fact]
    public async Task Register_WrongEndorsementAuth_ActivationFails()
    {
        await using var client = await tpms.TpmA.ConnectAsync(null, CancellationToken.None);
        await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, tpms.AuthA, CancellationToken.None);

        var result = await Registrar(tpms.Manufacturer).RegisterAsync(client, ak, TpmEndorsementAuth.Generate(), CancellationToken.None);

        Assert.Equal(TpmRegistrationStatus.ActivationFailed, result.Status);
        Assert.Contains("TPM_RC_BAD_AUTH", result.Reason, StringComparison.Ordinal);
        Assert.Equal(0, _registrars.Certified);
    }

    [Fact]
    public async Task Register_TpmWithoutEkCertificate_Missing()
    {
        await using var plain = await TestSwtpm.StartAsync();
        await using var client = await plain.ConnectAsync();
        await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, default, CancellationToken.None);

        var result = await Registrar(tpms.Manufacturer).RegisterAsync(client, ak, default, CancellationToken.None);

        Assert.Equal(TpmRegistrationStatus.EkCertificateMissing, result.Status);
        Assert.Equal(0, _registrars.Certified);
    }

    [Fact]
    public async Task CreatePrimary_WithoutEndorsementAuth_RefusedWithBadAuth()
    {
        await using var client = await tpms.TpmA.ConnectAsync(null, CancellationToken.None);

        var e = await Assert.ThrowsAsync<TpmException>(() => TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, default, CancellationToken.None));

        Assert.Equal(0x9A2u, e.ResponseCode!.Value.Value); // TPM_RC_BAD_AUTH on session 1
    }

    [Fact]
    public async Task ActivateCredential_CredentialFromTpm2Makecredential_OurClientRecoversSecret()
    {
        var dir = Directory.CreateTempSubdirectory("asterism-mkcred-").FullName;
        try
        {
            await using var client = await tpms.TpmA.ConnectAsync(null, CancellationToken.None);
            await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, tpms.AuthA, CancellationToken.None);
            var ek = TpmRsaPublicKey.Parse((await client.ReadPublicAsync(TpmRegistrar.RsaEkHandle, CancellationToken.None)).PublicArea);
            await File.WriteAllBytesAsync(Path.Combine(dir, "ek.pub"), [.. ToolsCredentialFile.Sized(ek.PublicArea)]);
            var secret = RandomNumberGenerator.GetBytes(32);
            await File.WriteAllBytesAsync(Path.Combine(dir, "secret"), secret);

            // -T none: tpm2-tools does MakeCredential in software, no TPM involved.
            await Tpm2Tools.RunOkAsync(null, "tpm2_makecredential", "-T", "none", "-u", Path.Combine(dir, "ek.pub"), "-s", Path.Combine(dir, "secret"),
                "-n", Convert.ToHexString(ak.PublicKey.ComputeName()), "-o", Path.Combine(dir, "cred"));
            var (blob, encryptedSecret) = ToolsCredentialFile.Read(await File.ReadAllBytesAsync(Path.Combine(dir, "cred")));

            var recovered = await TpmRegistrar.ActivateAsync(client, ak.Handle, TpmRegistrar.RsaEkHandle, tpms.AuthA,
                new TpmMadeCredential(blob, encryptedSecret), CancellationToken.None);

            Assert.Equal(secret, recovered);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task MakeCredential_OurBlob_Tpm2ActivatecredentialRecoversSecret()
    {
        var dir = Directory.CreateTempSubdirectory("asterism-actcred-").FullName;
        var tcti = tpms.TpmA.Tcti;
        string F(string name) => Path.Combine(dir, name);
        try
        {
            TpmMadeCredential credential;
            var secret = RandomNumberGenerator.GetBytes(32);
            await using (var client = await tpms.TpmA.ConnectAsync(null, CancellationToken.None))
            {
                var ek = TpmRsaPublicKey.Parse((await client.ReadPublicAsync(TpmRegistrar.RsaEkHandle, CancellationToken.None)).PublicArea);
                await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, tpms.AuthA, CancellationToken.None);
                credential = TpmCredential.Make(ek, ak.PublicKey.ComputeName(), secret);
            }
            await File.WriteAllBytesAsync(F("cred"), ToolsCredentialFile.Write(credential));
            var auth = "hex:" + Convert.ToHexString(tpms.AuthA);
            await Tpm2Tools.RunOkAsync(tcti, "tpm2_createprimary", "-Q", "-C", "e", "-P", auth, "-G", "ecc256:ecdsa-sha256:null", "-g", "sha256",
                "-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign|noda", "-c", F("ak.ctx"));
            await Tpm2Tools.RunOkAsync(tcti, "tpm2_startauthsession", "--policy-session", "-S", F("session.ctx"));
            await Tpm2Tools.RunOkAsync(tcti, "tpm2_policysecret", "-S", F("session.ctx"), "-c", "e", auth);
            try
            {
                await Tpm2Tools.RunOkAsync(tcti, "tpm2_activatecredential", "-c", F("ak.ctx"), "-C", "0x81010001", "-i", F("cred"),
                    "-o", F("recovered"), "-P", "session:" + F("session.ctx"));
            }
            finally
            {
                await Tpm2Tools.RunAsync(tcti, "tpm2_flushcontext", "-t");
                await Tpm2Tools.RunAsync(tcti, "tpm2_flushcontext", "-s");
            }

            Assert.Equal(secret, await File.ReadAllBytesAsync(F("recovered")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void RsaOaepEncrypt_EmptyLabel_DotNetDecrypts()
    {
        using var rsa = RSA.Create(2048);
        var message = RandomNumberGenerator.GetBytes(32);
        var encrypted = TpmCredential.RsaOaepEncrypt(rsa.ExportParameters(false), [], message);
        Assert.Equal(message, rsa.Decrypt(encrypted, RSAEncryptionPadding.OaepSHA256));
    }

    [Fact]
    public async Task RsaEkTemplate_CreatePrimary_SameKeyAsPersistedCertifiedEk()
    {
        await using var client = await tpms.TpmA.ConnectAsync(null, CancellationToken.None);
        var persisted = await client.ReadPublicAsync(TpmRegistrar.RsaEkHandle, CancellationToken.None);
        var created = await client.CreatePrimaryAsync(TpmHierarchy.Endorsement, TpmCredential.RsaEkTemplate(), tpms.AuthA, CancellationToken.None);
        await client.FlushContextAsync(created.Handle, CancellationToken.None);
        Assert.Equal(persisted.PublicArea, created.PublicArea);
        Assert.True(TpmCredential.IsStandardEndorsementKey(TpmRsaPublicKey.Parse(created.PublicArea)));
    }

    private TpmRegistrar Registrar(SwtpmManufacturer trusted) => _registrars.Trusting(trusted);
}

/// <summary>A CA made in the test to stand in for the provider CA: certifies any SPKI it is given.</summary>
internal static class ThrowAwayCa
{
    private static readonly ECDsa Key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private static readonly X509Certificate2 Certificate = new CertificateRequest("CN=throw-away test CA", Key, HashAlgorithmName.SHA256)
        .CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));

    public static byte[] Issue(byte[] spki)
    {
        var key = PublicKey.CreateFromSubjectPublicKeyInfo(spki, out _);
        var request = new CertificateRequest(new X500DistinguishedName("CN=test-node"), key, HashAlgorithmName.SHA256);
        using var certificate = request.Create(Certificate.SubjectName, X509SignatureGenerator.CreateForECDsa(Key),
            DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1), RandomNumberGenerator.GetBytes(8));
        return certificate.RawData;
    }
}
