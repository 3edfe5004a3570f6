using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Asterism.Attestation.Identities;

namespace Asterism.Cloud.Local;

/// <summary>
/// The local provider's certificate authority: as a cloud certifies each vTPM's attestation key, the provider
/// certifies each instance's attestation key with a certificate naming the instance and its role. The key stays in
/// the provider's own directory (0600); the certificate goes into the workspace's attestation config and into every
/// node directory. Validators trust keys that chain to it, nothing else.
/// </summary>
public sealed class ProviderCa : IDisposable
{
    public const string KeyFileName = "provider-ca.key";
    public const string CertificateFileName = "provider-ca.pem";

    /// <summary>How long an identity certificate is valid (the local provider does not renew).</summary>
    public static readonly TimeSpan IdentityValidity = TimeSpan.FromDays(5 * 365);

    private readonly ECDsa _key;
    private readonly Lock _lock = new();

    private ProviderCa(ECDsa key, X509Certificate2 certificate)
    {
        _key = key;
        Certificate = certificate;
        Fingerprint = IdentityCertificate.FingerprintOf(certificate.RawData);
    }

    public X509Certificate2 Certificate { get; }

    /// <summary>Lowercase hex SHA-256 of the CA certificate DER; part of every disk UUID the CA's nodes own.</summary>
    public string Fingerprint { get; }

    public string CertificatePem => PemEncoding.WriteString("CERTIFICATE", Certificate.RawData) + "\n";

    public static string KeyPath(string cloudDir) => Path.Combine(cloudDir, KeyFileName);

    public static string CertificatePath(string cloudDir) => Path.Combine(cloudDir, CertificateFileName);

    /// <summary>Loads the CA of <paramref name="cloudDir"/>, creating it (key 0600) when there is none.</summary>
    public static ProviderCa LoadOrCreate(string cloudDir, TimeProvider? time = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(cloudDir);
        var keyPath = KeyPath(cloudDir);
        if (File.Exists(keyPath))
        {
            return Load(cloudDir);
        }
        Directory.CreateDirectory(cloudDir);
        var now = (time ?? TimeProvider.System).GetUtcNow();
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var certificate = IdentityCertificate.CreateAuthority(key, "Asterism local provider CA " + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4)),
            now.AddHours(-1), now.AddYears(20));
        var pkcs8 = key.ExportPkcs8PrivateKey();
        var pem = PemEncoding.Write("PRIVATE KEY", pkcs8);
        var bytes = Encoding.ASCII.GetBytes(pem);
        try
        {
            // Certificate first: a key file without its certificate would make the next start fail, not reissue.
            IdentityFiles.WriteCertificate(CertificatePath(cloudDir), certificate.RawData);
            IdentityFiles.WritePrivateFile(keyPath, bytes);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(pkcs8);
            CryptographicOperations.ZeroMemory(bytes);
            CryptographicOperations.ZeroMemory(System.Runtime.InteropServices.MemoryMarshal.AsBytes(pem.AsSpan()));
        }
        return new ProviderCa(key, certificate);
    }

    /// <summary>Loads an existing CA; throws <see cref="CloudConfigException"/> naming what is wrong.</summary>
    public static ProviderCa Load(string cloudDir)
    {
        var keyPath = KeyPath(cloudDir);
        if (File.Exists(keyPath) && OwnerOnly.IsOpenToOthers(keyPath))
        {
            throw new CloudConfigException($"provider CA key {keyPath} is accessible by group or others; run: {OwnerOnly.ChmodHint(keyPath)}");
        }
        byte[] der;
        byte[] keyBytes;
        try
        {
            der = IdentityFiles.ReadCertificate(CertificatePath(cloudDir));
            keyBytes = File.ReadAllBytes(keyPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw new CloudConfigException($"provider CA in {cloudDir} cannot be read: {e.Message}");
        }
        var chars = new char[keyBytes.Length];
        try
        {
            var count = Encoding.ASCII.GetChars(keyBytes, chars);
            var key = ECDsa.Create();
            try
            {
                key.ImportFromPem(chars.AsSpan(0, count));
            }
            catch (ArgumentException)
            {
                key.Dispose();
                throw new CloudConfigException($"provider CA key {keyPath} holds no PEM private key");
            }
            var certificate = X509CertificateLoader.LoadCertificate(der);
            using var certificateKey = certificate.GetECDsaPublicKey();
            if (certificateKey is null || !certificateKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(key.ExportSubjectPublicKeyInfo()))
            {
                key.Dispose();
                throw new CloudConfigException($"provider CA key {keyPath} does not match its certificate");
            }
            return new ProviderCa(key, certificate);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(keyBytes);
            CryptographicOperations.ZeroMemory(System.Runtime.InteropServices.MemoryMarshal.AsBytes(chars.AsSpan()));
        }
    }

    /// <summary>Issues the identity certificate (DER) of instance <paramref name="instanceName"/> for the attestation key <paramref name="subjectPublicKeyInfo"/>.</summary>
    public byte[] IssueIdentity(string instanceName, string role, ReadOnlySpan<byte> subjectPublicKeyInfo, TimeProvider? time = null)
    {
        var now = (time ?? TimeProvider.System).GetUtcNow();
        lock (_lock)
        {
            return IdentityCertificate.Issue(_key, Certificate, instanceName, role, subjectPublicKeyInfo, now.AddHours(-1), now.Add(IdentityValidity));
        }
    }

    /// <summary>The identity authority (verifier side) of this CA.</summary>
    public IdentityAuthority CreateAuthority() => new(Certificate.RawData);

    public void Dispose()
    {
        _key.Dispose();
        Certificate.Dispose();
    }
}
