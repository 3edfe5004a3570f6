using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Asterism.Tpm;

/// <summary>
/// The local provider acting as a TPM manufacturer. It keeps a manufacturer CA (ECDSA P-256; key 0600 in a 0700
/// directory only the provider's account can read) and manufactures a fresh swtpm state with
/// <c>swtpm_setup --tpm2 --create-ek-cert</c> through a private <c>swtpm_localca</c> configuration, so the TPM gets
/// the standard RSA-2048 EK at 0x81010001 with its certificate, signed by this CA, at NV 0x01C00002 (plus an ECC
/// EK). Asked for an ECC endorsement key instead, it manufactures a TPM whose only EK certificate is for the TCG
/// profile's ECC NIST P-256 EK (template L-2) at NV 0x01C0000A, which it creates and certifies itself (swtpm_setup
/// 0.7 certifies only a P-384 ECC EK). Registrars trust EKs by this CA's certificate (<see cref="CertificatePath"/>), as they would a vendor's.
/// </summary>
public sealed class SwtpmManufacturer
{
    /// <summary>The CA certificate (PEM) registrars are configured with.</summary>
    public const string CertificateFileName = "manufacturer-ca.pem";

    private const string KeyFileName = "manufacturer-ca.key";
    private const string SerialFileName = "certserial";
    private const string LocalCaConfigName = "swtpm-localca.conf";
    private const string LocalCaOptionsName = "swtpm-localca.options";
    private const string SetupConfigName = "swtpm_setup.conf";
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private static readonly TimeSpan SetupTimeout = TimeSpan.FromSeconds(60);

    private SwtpmManufacturer(string directory, X509Certificate2 certificate)
    {
        Directory = directory;
        Certificate = certificate;
    }

    public string Directory { get; }

    public X509Certificate2 Certificate { get; }

    public string CertificatePath => Path.Combine(Directory, CertificateFileName);

    /// <summary>
    /// Loads the manufacturer CA from <paramref name="directory"/>, creating it (and the swtpm_setup and swtpm_localca
    /// configuration pointing at it) on first use. The directory is made 0700, the key 0600.
    /// </summary>
    public static SwtpmManufacturer LoadOrCreate(string directory, string manufacturerName = "Asterism local provider")
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        directory = Path.GetFullPath(directory);
        SwtpmProcess.CreatePrivateDirectory(directory);
        var keyPath = Path.Combine(directory, KeyFileName);
        var certificatePath = Path.Combine(directory, CertificateFileName);
        if (!File.Exists(keyPath) || !File.Exists(certificatePath))
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest($"CN={manufacturerName} TPM manufacturer CA", key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
            var now = DateTimeOffset.UtcNow;
            using var ca = request.CreateSelfSigned(now.AddMinutes(-5), now.AddYears(20));
            // swtpm_cert (GnuTLS) reads an unencrypted PKCS#8 PEM key.
            WritePrivate(keyPath, key.ExportPkcs8PrivateKeyPem());
            WritePrivate(certificatePath, ca.ExportCertificatePem());
            WritePrivate(Path.Combine(directory, SerialFileName), "1\n");
        }
        WritePrivate(Path.Combine(directory, LocalCaConfigName),
            $"statedir = {directory}\nsigningkey = {keyPath}\nissuercert = {certificatePath}\ncertserial = {Path.Combine(directory, SerialFileName)}\n");
        WritePrivate(Path.Combine(directory, LocalCaOptionsName),
            "--platform-manufacturer Asterism\n--platform-version 1\n--platform-model swtpm\n");
        WritePrivate(Path.Combine(directory, SetupConfigName),
            $"create_certs_tool = {SwtpmProcess.FindExecutable("swtpm_localca") ?? "/usr/bin/swtpm_localca"}\n"
            + $"create_certs_tool_config = {Path.Combine(directory, LocalCaConfigName)}\n"
            + $"create_certs_tool_options = {Path.Combine(directory, LocalCaOptionsName)}\n"
            + "active_pcr_banks = sha256\n");
        return new SwtpmManufacturer(directory, X509CertificateLoader.LoadCertificateFromFile(certificatePath));
    }

    /// <summary>
    /// Manufactures a TPM into the empty state directory <paramref name="stateDirectory"/> (made 0700): EKs and EK
    /// certificates, SHA-256 PCR bank. swtpm must not be running on that state. ~0.7 s on our machines.
    /// </summary>
    public Task ManufactureAsync(string stateDirectory, CancellationToken cancellationToken) =>
        ManufactureAsync(stateDirectory, TpmEkType.Rsa, cancellationToken);

    /// <summary>
    /// As the other overload, with the certified EK of kind <paramref name="endorsementKey"/>: <see cref="TpmEkType.Rsa"/>
    /// as swtpm_setup makes it, or <see cref="TpmEkType.Ecc"/>, a TPM with only the ECC P-256 EK certified (see
    /// <see cref="ProvisionEccEndorsementKeyAsync"/>) — what a hardware TPM with an ECC EK looks like to a registrar.
    /// </summary>
    public async Task ManufactureAsync(string stateDirectory, TpmEkType endorsementKey, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(stateDirectory);
        var executable = SwtpmProcess.FindExecutable("swtpm_setup")
            ?? throw new TpmException("swtpm_setup is not installed: install the package swtpm-tools (apt-get install -y swtpm-tools)");
        stateDirectory = Path.GetFullPath(stateDirectory);
        SwtpmProcess.CreatePrivateDirectory(stateDirectory);
        var psi = new ProcessStartInfo(executable)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in new[]
        {
            "--tpm2", "--tpmstate", stateDirectory, endorsementKey == TpmEkType.Ecc ? "--createek" : "--create-ek-cert", "--ecc", "--overwrite",
            "--config", Path.Combine(Directory, SetupConfigName),
        })
        {
            psi.ArgumentList.Add(a);
        }
        using var process = Process.Start(psi) ?? throw new TpmException("swtpm_setup did not start");
        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(SetupTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        var output = (await stdout.ConfigureAwait(false)) + (await stderr.ConfigureAwait(false));
        var expected = endorsementKey == TpmEkType.Ecc ? "Successfully created ECC EK" : "0x1c00002";
        if (process.ExitCode != 0 || !output.Contains(expected, StringComparison.OrdinalIgnoreCase))
        {
            throw new TpmException($"swtpm_setup failed with exit code {process.ExitCode}: {LastLines(output, 5)}");
        }
        if (endorsementKey == TpmEkType.Ecc)
        {
            await using var tpm = await SwtpmProcess.StartAsync(stateDirectory, cancellationToken).ConfigureAwait(false);
            await using (var client = await tpm.ConnectAsync(null, cancellationToken).ConfigureAwait(false))
            {
                // Platform and endorsement auth are still empty on a fresh TPM.
                await ProvisionEccEndorsementKeyAsync(client, default, default, cancellationToken).ConfigureAwait(false);
            }
            await tpm.StopAsync(cancellationToken).ConfigureAwait(false);
        }
        foreach (var file in System.IO.Directory.GetFiles(stateDirectory))
        {
            File.SetUnixFileMode(file, OwnerOnly);
        }
    }

    /// <summary>
    /// Makes the TPM behind <paramref name="client"/> carry a certified ECC NIST P-256 EK as a vendor would: creates
    /// the EK from the TCG template (L-2) in the endorsement hierarchy, issues its certificate with this CA and
    /// writes it to NV 0x01C0000A (platform-created, platform-written, readable with the index's empty auth).
    /// </summary>
    public async Task ProvisionEccEndorsementKeyAsync(
        TpmClient client, ReadOnlyMemory<byte> platformAuth, ReadOnlyMemory<byte> endorsementAuth, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        var created = await client.CreatePrimaryAsync(TpmHierarchy.Endorsement, TpmCredential.EccEkTemplate(), endorsementAuth, cancellationToken).ConfigureAwait(false);
        await client.FlushContextAsync(created.Handle, cancellationToken).ConfigureAwait(false);
        var ek = TpmEccPublicKey.Parse(created.PublicArea);
        var certificate = IssueEndorsementCertificate(ek);
        await client.NvDefineSpaceAsync(TpmHierarchy.Platform, platformAuth, TpmRegistrar.EccEkCertificateIndex, EkCertificateNvAttributes,
            (ushort)certificate.Length, cancellationToken).ConfigureAwait(false);
        await client.NvWriteAsync((uint)TpmHierarchy.Platform, platformAuth, TpmRegistrar.EccEkCertificateIndex, certificate, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>An EK certificate (DER) for <paramref name="ek"/> signed by this CA: key agreement only, not a CA.</summary>
    public byte[] IssueEndorsementCertificate(TpmEccPublicKey ek)
    {
        ArgumentNullException.ThrowIfNull(ek);
        using var caKey = ECDsa.Create();
        caKey.ImportFromPem(File.ReadAllText(Path.Combine(Directory, KeyFileName)));
        using var ekKey = ECDiffieHellman.Create(new ECParameters { Curve = ECCurve.NamedCurves.nistP256, Q = new ECPoint { X = ek.X, Y = ek.Y } });
        var request = new CertificateRequest(new X500DistinguishedName("CN=TPM EK"), new PublicKey(ekKey), HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyAgreement, true));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, true, false));
        var now = DateTimeOffset.UtcNow;
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F;
        using var issued = request.Create(Certificate.SubjectName, X509SignatureGenerator.CreateForECDsa(caKey), now.AddMinutes(-5), now.AddYears(20), serial);
        return issued.RawData;
    }

    // TCG EK profile: PPWRITE | WRITEDEFINE | PPREAD | OWNERREAD | AUTHREAD | NO_DA | PLATFORMCREATE, ordinary index.
    private const uint EkCertificateNvAttributes = 0x1u | (1u << 13) | (1u << 16) | (1u << 17) | (1u << 18) | (1u << 25) | (1u << 30);

    private static string LastLines(string text, int count) =>
        string.Join(" | ", text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).TakeLast(count));

    private static void WritePrivate(string path, string content)
    {
        var temp = path + ".tmp";
        using (var stream = new FileStream(temp, new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, UnixCreateMode = OwnerOnly }))
        {
            File.SetUnixFileMode(temp, OwnerOnly);
            stream.Write(System.Text.Encoding.UTF8.GetBytes(content));
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
    }
}
