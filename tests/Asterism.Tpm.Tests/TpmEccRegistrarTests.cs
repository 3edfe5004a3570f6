using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Asterism.Tpm.Tests;

/// <summary>Two TPMs whose only certified EK is the TCG ECC P-256 one (NV 0x01C0000A), endorsement auth set on both.</summary>
public sealed class EccManufacturedTpmsFixture : ManufacturedTpmPair
{
    protected override TpmEkType EkType => TpmEkType.Ecc;
}

/// <summary>AK certification against ECC P-256 endorsement keys: ECDH/KDFe MakeCredential, the TPM's refusals, tpm2-tools interop.</summary>
public sealed class TpmEccRegistrarTests(EccManufacturedTpmsFixture tpms) : IClassFixture<EccManufacturedTpmsFixture>
{
    private readonly CountingRegistrars _registrars = new();

    [Fact]
    public async Task Register_AkInTpmWithOnlyEccEkCertificate_Certified()
    {
        await using var client = await tpms.TpmA.ConnectAsync(null, CancellationToken.None);
        await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, tpms.AuthA, CancellationToken.None);

        var result = await Registrar().RegisterAsync(client, ak, tpms.AuthA, CancellationToken.None);

        Assert.True(result.IsCertified, result.Reason);
        Assert.Equal(1, _registrars.Certified);
        using var identity = X509CertificateLoader.LoadCertificate(result.IdentityCertificate!);
        Assert.Equal(ak.PublicKey.ExportSubjectPublicKeyInfo(), identity.PublicKey.ExportSubjectPublicKeyInfo());
    }

    [Fact]
    public async Task Register_RsaOnlyPreferenceOnEccTpm_Missing()
    {
        await using var client = await tpms.TpmA.ConnectAsync(null, CancellationToken.None);
        await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, tpms.AuthA, CancellationToken.None);
        var registrar = new TpmRegistrar(new X509Certificate2Collection(tpms.Manufacturer.Certificate), _ => throw new InvalidOperationException("must not certify"))
        {
            EndorsementKeyTypes = [TpmEkType.Rsa],
        };

        var result = await registrar.RegisterAsync(client, ak, tpms.AuthA, CancellationToken.None);

        Assert.Equal(TpmRegistrationStatus.EkCertificateMissing, result.Status);
    }

    [Fact]
    public async Task ActivateCredential_MadeForAnotherTpmsEccEk_RefusedByTpm()
    {
        // A credential wrapped for TPM B's EK (ECDH with B's point) names TPM A's AK: TPM A derives another seed and refuses.
        TpmEccPublicKey ekB;
        await using (var clientB = await tpms.TpmB.ConnectAsync(null, CancellationToken.None))
        {
            ekB = await CreateEkAsync(clientB, tpms.AuthB, flush: true);
        }
        await using var client = await tpms.TpmA.ConnectAsync(null, CancellationToken.None);
        await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, tpms.AuthA, CancellationToken.None);
        var created = await client.CreatePrimaryAsync(TpmHierarchy.Endorsement, TpmCredential.EccEkTemplate(), tpms.AuthA, CancellationToken.None);
        try
        {
            var credential = TpmCredential.Make(ekB, ak.PublicKey.ComputeName(), RandomNumberGenerator.GetBytes(32));

            var e = await Assert.ThrowsAsync<TpmException>(() =>
                TpmRegistrar.ActivateAsync(client, ak.Handle, created.Handle, tpms.AuthA, credential, CancellationToken.None));

            Assert.Contains("TPM_RC_INTEGRITY", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            await client.FlushContextAsync(created.Handle, CancellationToken.None);
        }
    }

    [Fact]
    public async Task Register_AkFromAnotherTpm_EccActivationFails()
    {
        TpmEccPublicKey foreignAk;
        await using (var clientA = await tpms.TpmA.ConnectAsync(null, CancellationToken.None))
        {
            await using var akA = await TpmAttestationKey.CreateAsync(clientA, TpmHierarchy.Endorsement, tpms.AuthA, CancellationToken.None);
            foreignAk = akA.PublicKey;
        }
        await using var clientB = await tpms.TpmB.ConnectAsync(null, CancellationToken.None);
        await using var akB = await TpmAttestationKey.CreateAsync(clientB, TpmHierarchy.Endorsement, tpms.AuthB, CancellationToken.None);

        var result = await Registrar().RegisterAsync(clientB, foreignAk, tpms.AuthB,
            (ek, credential, ct) => TpmRegistrar.ActivateAsync(clientB, akB.Handle, ek, tpms.AuthB, credential, ct), CancellationToken.None);

        Assert.Equal(TpmRegistrationStatus.ActivationFailed, result.Status);
        Assert.Contains("TPM_RC_INTEGRITY", result.Reason, StringComparison.Ordinal);
        Assert.Equal(0, _registrars.Certified);
    }

    [Fact]
    public async Task EccEkTemplate_SameKeyAsTpm2CreateekEcc()
    {
        var dir = Directory.CreateTempSubdirectory("asterism-ecc-ek-").FullName;
        try
        {
            TpmEccPublicKey ours;
            await using (var client = await tpms.TpmA.ConnectAsync(null, CancellationToken.None))
            {
                ours = await CreateEkAsync(client, tpms.AuthA, flush: true);
            }
            await Tpm2Tools.RunOkAsync(tpms.TpmA.Tcti, "tpm2_createek", "-G", "ecc", "-P", "hex:" + Convert.ToHexString(tpms.AuthA),
                "-c", Path.Combine(dir, "ek.ctx"), "-u", Path.Combine(dir, "ek.pub"));
            await Tpm2Tools.RunAsync(tpms.TpmA.Tcti, "tpm2_flushcontext", "-t");

            var tools = TpmEccPublicKey.ParseSized(await File.ReadAllBytesAsync(Path.Combine(dir, "ek.pub")));

            Assert.Equal(tools.PublicArea.ToArray(), ours.PublicArea.ToArray());
            Assert.True(TpmCredential.IsStandardEndorsementKey(ours));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task ActivateCredential_EccCredentialFromTpm2Makecredential_OurClientRecoversSecret()
    {
        var dir = Directory.CreateTempSubdirectory("asterism-ecc-mkcred-").FullName;
        try
        {
            await using var client = await tpms.TpmA.ConnectAsync(null, CancellationToken.None);
            await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, tpms.AuthA, CancellationToken.None);
            var created = await client.CreatePrimaryAsync(TpmHierarchy.Endorsement, TpmCredential.EccEkTemplate(), tpms.AuthA, CancellationToken.None);
            try
            {
                await File.WriteAllBytesAsync(Path.Combine(dir, "ek.pub"), ToolsCredentialFile.Sized(created.PublicArea));
                var secret = RandomNumberGenerator.GetBytes(32);
                await File.WriteAllBytesAsync(Path.Combine(dir, "secret"), secret);
                await Tpm2Tools.RunOkAsync(null, "tpm2_makecredential", "-T", "none", "-u", Path.Combine(dir, "ek.pub"),
                    "-s", Path.Combine(dir, "secret"), "-n", Convert.ToHexString(ak.PublicKey.ComputeName()), "-o", Path.Combine(dir, "cred"));
                var (blob, encryptedSecret) = ToolsCredentialFile.Read(await File.ReadAllBytesAsync(Path.Combine(dir, "cred")));

                var recovered = await TpmRegistrar.ActivateAsync(client, ak.Handle, created.Handle, tpms.AuthA,
                    new TpmMadeCredential(blob, encryptedSecret), CancellationToken.None);

                Assert.Equal(secret, recovered);
            }
            finally
            {
                await client.FlushContextAsync(created.Handle, CancellationToken.None);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void KdfE_KnownAnswer_MatchesDefinition()
    {
        // One block: SHA-256(00000001 ‖ Z ‖ "IDENTITY\0" ‖ U ‖ V), computed independently here.
        var z = RandomNumberGenerator.GetBytes(32);
        var u = RandomNumberGenerator.GetBytes(32);
        var v = RandomNumberGenerator.GetBytes(32);
        byte[] expected = SHA256.HashData([0, 0, 0, 1, .. z, .. "IDENTITY\0"u8, .. u, .. v]);

        Assert.Equal(expected, TpmCredential.KdfE(z, "IDENTITY", u, v, 256));
    }

    private static async Task<TpmEccPublicKey> CreateEkAsync(TpmClient client, byte[] auth, bool flush)
    {
        var created = await client.CreatePrimaryAsync(TpmHierarchy.Endorsement, TpmCredential.EccEkTemplate(), auth, CancellationToken.None);
        if (flush)
        {
            await client.FlushContextAsync(created.Handle, CancellationToken.None);
        }
        return TpmEccPublicKey.Parse(created.PublicArea);
    }

    private TpmRegistrar Registrar() => _registrars.Trusting(tpms.Manufacturer);
}
