using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Asterism.ControlPlane;

/// <summary>A certificate and its private key as PEM files (both 0600), ready for etcd's flags or a gRPC client.</summary>
/// <param name="CertificatePath">PEM certificate.</param>
/// <param name="KeyPath">PEM PKCS#8 private key.</param>
/// <param name="CaPath">PEM of the cluster CA the peer must chain to.</param>
public sealed record TlsFiles(string CertificatePath, string KeyPath, string CaPath)
{
    /// <summary>Loads the certificate with its key, for <see cref="EtcdConnection"/>.</summary>
    public X509Certificate2 LoadCertificate()
    {
        var keyPem = SecureFiles.ReadPrivateKeyPem(KeyPath);
        byte[]? pkcs12 = null;
        try
        {
            using var pem = X509Certificate2.CreateFromPem(SecureFiles.ReadPrivate(CertificatePath), keyPem);
            // Round trip through PKCS#12 so the key is a persisted one, which SslStream wants for client certificates.
            pkcs12 = pem.Export(X509ContentType.Pkcs12);
            return X509CertificateLoader.LoadPkcs12(pkcs12, null);
        }
        finally
        {
            Array.Clear(keyPem);
            if (pkcs12 is not null)
            {
                CryptographicOperations.ZeroMemory(pkcs12);
            }
        }
    }

    /// <summary>Loads the CA certificate the peer's chain must end in.</summary>
    public X509Certificate2 LoadCa() => X509Certificate2.CreateFromPem(File.ReadAllText(CaPath));
}

/// <summary>
/// The cluster CA made at <c>init</c>: ECDSA P-256, self-signed, its key in <c>ca.key</c> (0600) in a 0700 directory the
/// caller chooses (the node: its encrypted state filesystem). It issues the cluster API's certificates (servers and the
/// admin). Its <see cref="ForEtcd"/> twin — the same key under another name, <c>etcd-ca.crt</c> — issues each etcd
/// member one certificate used for both client-facing and peer TLS (serverAuth + clientAuth, naming the member's 127.x
/// address) and etcd client certificates (clientAuth only); etcd trusts only the twin, so nothing the cluster CA itself
/// signs (the admin credential above all) chains to what etcd trusts. Dispose drops the key object.
/// </summary>
public sealed class ClusterCa : IDisposable
{
    /// <summary>File name of the CA certificate in the CA directory.</summary>
    public const string CertificateFile = "ca.crt";

    /// <summary>File name of the CA key in the CA directory.</summary>
    public const string KeyFile = "ca.key";

    /// <summary>File name of the etcd CA certificate (same key, another subject) in the CA directory.</summary>
    public const string EtcdCertificateFile = "etcd-ca.crt";

    private static readonly TimeSpan CaLifetime = TimeSpan.FromDays(3650);
    /// <summary>An admin certificate request larger than this is refused before parsing.</summary>
    public const int MaxSigningRequestBytes = 4096;

    private static readonly TimeSpan LeafLifetime = TimeSpan.FromDays(825);

    private readonly ECDsa _key;
    private readonly string _certificateFile;

    private ClusterCa(X509Certificate2 certificate, ECDsa key, string directory, string certificateFile = CertificateFile)
    {
        Certificate = certificate;
        _key = key;
        Directory = directory;
        _certificateFile = certificateFile;
    }

    /// <summary>Whether this is the etcd twin (<see cref="ForEtcd"/>).</summary>
    public bool IsEtcdCa => _certificateFile == EtcdCertificateFile;

    /// <summary>The CA certificate (public).</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>Where ca.crt and ca.key live.</summary>
    public string Directory { get; }

    /// <summary>Path of the CA certificate PEM.</summary>
    public string CertificatePath => Path.Combine(Directory, _certificateFile);

    /// <summary>Makes a new CA in <paramref name="directory"/> (0700); refuses to overwrite an existing one.</summary>
    public static ClusterCa Create(string directory, string clusterName, TimeProvider? time = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentException.ThrowIfNullOrWhiteSpace(clusterName);
        SecureFiles.EnsurePrivateDirectory(directory);
        if (File.Exists(Path.Combine(directory, KeyFile)))
        {
            throw new ControlPlaneException(ControlPlaneError.InvalidRequest, $"a cluster CA already exists in {directory}");
        }
        var now = (time ?? TimeProvider.System).GetUtcNow();
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN=asterism cluster CA {clusterName}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        using var selfSigned = request.CreateSelfSigned(now.AddMinutes(-5), now + CaLifetime);
        var certificate = X509CertificateLoader.LoadCertificate(selfSigned.RawData);
        WriteKey(Path.Combine(directory, KeyFile), key);
        SecureFiles.WritePrivate(Path.Combine(directory, CertificateFile), certificate.ExportCertificatePem());
        return new ClusterCa(certificate, key, directory);
    }

    /// <summary>Loads the CA from <paramref name="directory"/>; the key file must be 0600.</summary>
    public static ClusterCa Load(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var certificate = X509Certificate2.CreateFromPem(SecureFiles.ReadPrivate(Path.Combine(directory, CertificateFile)));
        var key = ECDsa.Create();
        var keyPem = SecureFiles.ReadPrivateKeyPem(Path.Combine(directory, KeyFile));
        try
        {
            key.ImportFromPem(keyPem);
        }
        catch (CryptographicException e)
        {
            key.Dispose();
            throw new ControlPlaneException(ControlPlaneError.Files, $"{Path.Combine(directory, KeyFile)} is not an EC private key", e);
        }
        finally
        {
            Array.Clear(keyPem);
        }
        using var pub = certificate.GetECDsaPublicKey();
        if (pub is null || !pub.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(key.ExportSubjectPublicKeyInfo()))
        {
            key.Dispose();
            throw new ControlPlaneException(ControlPlaneError.Files, $"the CA key in {directory} does not match its certificate");
        }
        return new ClusterCa(certificate, key, directory);
    }

    /// <summary>
    /// The etcd CA: the same key under its own subject (<c>CN=asterism etcd CA</c> + the key's identifier), self-signed
    /// with this CA's validity, kept as <c>etcd-ca.crt</c> next to <c>ca.crt</c> (made on first use, so a control plane
    /// that received only the cluster CA in its join ticket makes an equivalent one). X.509 chains by issuer name, so a
    /// certificate the cluster CA signs (issuer "asterism cluster CA …") never chains to the etcd CA, although the key is
    /// the same; only a holder of the key — a control plane — can issue under the etcd name. Why the same key and not
    /// a second one: the join ticket already carries this key to every control plane, and a second key would have to
    /// travel the same way to the same places without adding a boundary.
    /// </summary>
    public ClusterCa ForEtcd()
    {
        if (IsEtcdCa)
        {
            throw new InvalidOperationException("this is already the etcd CA");
        }
        var subject = new X500DistinguishedName($"CN=asterism etcd CA {EtcdNameSuffix()}");
        var path = Path.Combine(Directory, EtcdCertificateFile);
        X509Certificate2? certificate = null;
        if (File.Exists(path))
        {
            certificate = X509Certificate2.CreateFromPem(SecureFiles.ReadPrivate(path));
            using var pub = certificate.GetECDsaPublicKey();
            if (pub is null || !certificate.SubjectName.RawData.AsSpan().SequenceEqual(subject.RawData)
                || !pub.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(_key.ExportSubjectPublicKeyInfo()))
            {
                certificate.Dispose();
                throw new ControlPlaneException(ControlPlaneError.Files, $"{path} is not this cluster's etcd CA");
            }
        }
        else
        {
            var request = new CertificateRequest(subject, _key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
            // Serial and validity follow from the cluster CA, so every control plane's copy says the same thing.
            var serial = SHA256.HashData(Certificate.RawData)[..16];
            serial[0] &= 0x7f;
            using var signed = request.Create(subject, X509SignatureGenerator.CreateForECDsa(_key), Certificate.NotBefore, Certificate.NotAfter, serial);
            certificate = X509CertificateLoader.LoadCertificate(signed.RawData);
            SecureFiles.WritePrivate(path, certificate.ExportCertificatePem());
        }
        var key = ECDsa.Create();
        var pkcs8 = _key.ExportPkcs8PrivateKey();
        try
        {
            key.ImportPkcs8PrivateKey(pkcs8, out _);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(pkcs8);
        }
        return new ClusterCa(certificate, key, Directory, EtcdCertificateFile);
    }

    private string EtcdNameSuffix() => Convert.ToHexStringLower(SHA256.HashData(_key.ExportSubjectPublicKeyInfo()))[..16];

    /// <summary>
    /// Issues the certificate of an etcd member listening on <paramref name="address"/> (used for client and peer TLS
    /// alike) into <paramref name="directory"/> as member.crt / member.key, with a copy of ca.crt.
    /// </summary>
    public TlsFiles IssueMember(string directory, string memberName, IPAddress address, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (!IPAddress.IsLoopback(address))
        {
            // The project's network rule: every listener stays on 127/8 or ::1.
            throw new ControlPlaneException(ControlPlaneError.InvalidRequest, $"etcd member address {address} is not a loopback address");
        }
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(address);
        // etcd checks a peer's client certificate against the connection's source address, and Linux sends loopback
        // traffic from 127.0.0.1 whatever 127.x address is dialled (measured: without it a second member cannot
        // join). Nothing ever dials 127.0.0.1, so naming it does not let one member pose as another's address.
        if (!address.Equals(IPAddress.Loopback))
        {
            san.AddIpAddress(IPAddress.Loopback);
        }
        return Issue(directory, "member", memberName, san, server: true, time);
    }

    /// <summary>Issues a client certificate (clientAuth only) into <paramref name="directory"/> as FILEBASE.crt / .key.</summary>
    public TlsFiles IssueClient(string directory, string clientName, string fileBase = "client", TimeProvider? time = null) =>
        Issue(directory, fileBase, clientName, null, server: false, time);

    /// <summary>
    /// Issues the cluster API's admin client certificate for the key in <paramref name="signingRequestDer"/> (a PKCS#10
    /// request whose self-signature must verify, so the caller holds the private key). Only the public key is taken from
    /// the request: the subject is <c>CN=NAME, O=</c><see cref="ClusterApiTls.AdminOrganization"/>, clientAuth only. The
    /// private key never reaches the control plane. Returns the certificate (public).
    /// </summary>
    public X509Certificate2 IssueAdmin(ReadOnlySpan<byte> signingRequestDer, string clientName, TimeProvider? time = null)
    {
        if (IsEtcdCa)
        {
            // The admin must never hold a certificate etcd accepts (it would bypass the registry and the audit log).
            throw new InvalidOperationException("the etcd CA does not issue admin credentials");
        }
        NodeNames.Validate(clientName);
        var publicKey = ReadAdminRequest(signingRequestDer);
        var subject = new X500DistinguishedNameBuilder();
        subject.AddOrganizationName(ClusterApiTls.AdminOrganization);
        subject.AddCommonName(clientName);
        var request = new CertificateRequest(subject.Build(), publicKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(new OidCollection { new Oid(ClusterApiTls.ClientAuthOid) }, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, true, false));
        var now = (time ?? TimeProvider.System).GetUtcNow();
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using var leaf = request.Create(Certificate.SubjectName, X509SignatureGenerator.CreateForECDsa(_key), now.AddMinutes(-5), now + LeafLifetime, serial);
        return X509CertificateLoader.LoadCertificate(leaf.RawData);
    }

    /// <summary>
    /// Checks an admin certificate request without issuing anything (so <c>init</c> can refuse a bad one before it
    /// changes the node): size, DER, a verifying self-signature, an ECDSA P-256 key.
    /// </summary>
    public static void ValidateAdminRequest(ReadOnlySpan<byte> signingRequestDer) => ReadAdminRequest(signingRequestDer);

    private static PublicKey ReadAdminRequest(ReadOnlySpan<byte> signingRequestDer)
    {
        if (signingRequestDer.Length is 0 or > MaxSigningRequestBytes)
        {
            throw new ControlPlaneException(ControlPlaneError.InvalidRequest, $"the admin certificate request must be 1-{MaxSigningRequestBytes} bytes");
        }
        CertificateRequest parsed;
        try
        {
            parsed = CertificateRequest.LoadSigningRequest(signingRequestDer, HashAlgorithmName.SHA256, out var consumed, CertificateRequestLoadOptions.Default);
            if (consumed != signingRequestDer.Length)
            {
                throw new ControlPlaneException(ControlPlaneError.InvalidRequest, "the admin certificate request has trailing bytes");
            }
        }
        catch (CryptographicException e)
        {
            throw new ControlPlaneException(ControlPlaneError.InvalidRequest, "the admin certificate request is not a valid self-signed PKCS#10 request", e);
        }
        using var key = parsed.PublicKey.GetECDsaPublicKey();
        if (key is null || key.KeySize != 256)
        {
            throw new ControlPlaneException(ControlPlaneError.InvalidRequest, "the admin certificate request must carry an ECDSA P-256 key");
        }
        return parsed.PublicKey;
    }

    private TlsFiles Issue(string directory, string fileBase, string commonName, SubjectAlternativeNameBuilder? san, bool server, TimeProvider? time)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        NodeNames.Validate(commonName);
        SecureFiles.EnsurePrivateDirectory(directory);
        var now = (time ?? TimeProvider.System).GetUtcNow();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={commonName}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        var usages = new OidCollection { new Oid("1.3.6.1.5.5.7.3.2") };
        if (server)
        {
            usages.Add(new Oid("1.3.6.1.5.5.7.3.1"));
        }
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(usages, false));
        if (san is not null)
        {
            request.CertificateExtensions.Add(san.Build());
        }
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, true, false));
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using var leaf = request.Create(Certificate.SubjectName, X509SignatureGenerator.CreateForECDsa(_key), now.AddMinutes(-5), now + LeafLifetime, serial);
        var inCaDirectory = string.Equals(Path.GetFullPath(directory), Path.GetFullPath(Directory), StringComparison.Ordinal);
        var files = new TlsFiles(Path.Combine(directory, fileBase + ".crt"), Path.Combine(directory, fileBase + ".key"),
            inCaDirectory ? CertificatePath : Path.Combine(directory, CertificateFile));
        WriteKey(files.KeyPath, key);
        SecureFiles.WritePrivate(files.CertificatePath, leaf.ExportCertificatePem());
        if (!inCaDirectory)
        {
            // The copy is always named ca.crt: for etcd's files it is the etcd CA, the only issuer etcd trusts.
            SecureFiles.WritePrivate(files.CaPath, Certificate.ExportCertificatePem());
        }
        return files;
    }

    /// <summary>Writes the key as PKCS#8 PEM (0600), zeroing the DER and PEM buffers afterwards.</summary>
    private static void WriteKey(string path, ECDsa key)
    {
        var der = key.ExportPkcs8PrivateKey();
        byte[]? pem = null;
        try
        {
            pem = PemEncoding.WriteUtf8("PRIVATE KEY"u8, der);
            SecureFiles.WritePrivate(path, pem);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(der);
            if (pem is not null)
            {
                CryptographicOperations.ZeroMemory(pem);
            }
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _key.Dispose();
        Certificate.Dispose();
    }
}
