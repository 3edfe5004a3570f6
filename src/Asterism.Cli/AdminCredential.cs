using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Asterism.Cloud;
using Asterism.ControlPlane;

namespace Asterism.Cli;

/// <summary>
/// The cluster API's admin credential in the workspace, a kubeconfig-like JSON file (<c>admin/cluster-admin.json</c>,
/// 0600 in a 0700 directory): the API's address, the cluster CA certificate, the admin certificate and its private key.
/// The key is made here, at <c>init</c>; only its certificate request leaves the workspace, and control-plane-0 answers
/// with the certificate its cluster CA signed.
/// </summary>
public sealed class AdminCredential : IDisposable
{
    /// <summary>The credential's folder below the workspace.</summary>
    public const string FolderName = "admin";

    /// <summary>The credential's file name.</summary>
    public const string FileName = "cluster-admin.json";

    private const int MaxFileBytes = 64 * 1024;
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    private AdminCredential(string server, X509Certificate2 ca, X509Certificate2 client)
    {
        Server = server;
        Ca = ca;
        Client = client;
    }

    /// <summary>"ADDRESS:PORT" of the cluster API (the provider's load balancer).</summary>
    public string Server { get; }

    /// <summary>The cluster CA: the server must chain to it.</summary>
    public X509Certificate2 Ca { get; }

    /// <summary>The admin certificate with its private key.</summary>
    public X509Certificate2 Client { get; }

    /// <summary>Where the credential lives in <paramref name="workspace"/>.</summary>
    public static string PathIn(string workspace) => Path.Combine(workspace, FolderName, FileName);

    /// <summary>A new P-256 key and a self-signed PKCS#10 request for it (DER), to send in the init request.</summary>
    public static (ECDsa Key, byte[] Request) NewRequest()
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=admin", key, HashAlgorithmName.SHA256);
        return (key, request.CreateSigningRequest());
    }

    /// <summary>
    /// Writes the credential: the folder 0700, the file 0600 (written under a 0600 temporary name and renamed), after
    /// checking that the certificate control-plane-0 returned is for our key and chains to the CA it returned.
    /// </summary>
    public static void Write(string workspace, string server, byte[] caDer, byte[] certificateDer, ECDsa key)
    {
        ArgumentNullException.ThrowIfNull(key);
        using var ca = LoadDer(caDer, "cluster CA certificate");
        using var certificate = LoadDer(certificateDer, "admin certificate");
        using (var certKey = certificate.GetECDsaPublicKey())
        {
            if (certKey is null || !certKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(key.ExportSubjectPublicKeyInfo()))
            {
                throw new CliError("control-plane-0 returned an admin certificate for another key; refusing it");
            }
        }
        if (!ClusterApiTls.ChainsTo(certificate, ca, ClusterApiTls.ClientAuthOid) || !ClusterApiTls.IsAdmin(certificate))
        {
            throw new CliError("control-plane-0 returned an admin certificate that does not chain to its cluster CA; refusing it");
        }
        var directory = Path.Combine(workspace, FolderName);
        OwnerOnly.CreateDirectory(directory);
        var keyPem = key.ExportPkcs8PrivateKeyPem();
        var document = new FileFormat(server, ca.ExportCertificatePem(), certificate.ExportCertificatePem(), keyPem);
        var bytes = JsonSerializer.SerializeToUtf8Bytes(document, Json);
        try
        {
            var path = Path.Combine(directory, FileName);
            var temp = path + ".tmp";
            File.Delete(temp);
            OwnerOnly.WriteAllBytes(temp, bytes);
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(bytes);
        }
    }

    /// <summary>
    /// Loads the credential; a missing file, one others can read, or one that does not parse is a one-line error.
    /// </summary>
    public static AdminCredential Load(string workspace)
    {
        var path = PathIn(workspace);
        if (!File.Exists(path))
        {
            throw new CliError($"no cluster API credential at {path} (it is written by 'asterism init')");
        }
        if (OwnerOnly.IsOpenToOthers(path) || OwnerOnly.IsOpenToOthers(Path.GetDirectoryName(path)!))
        {
            throw new CliError($"{path} or its folder is readable by others; run {OwnerOnly.ChmodHint(path)} and chmod 700 on its folder");
        }
        var info = new FileInfo(path);
        if (info.Length > MaxFileBytes)
        {
            throw new CliError($"{path} is larger than {MaxFileBytes} bytes; it is not a cluster API credential");
        }
        var bytes = File.ReadAllBytes(path);
        try
        {
            var document = JsonSerializer.Deserialize<FileFormat>(bytes, Json);
            if (document is null || document.Server is null || document.CaCertificate is null || document.ClientCertificate is null || document.ClientKey is null
                || !IPEndPoint.TryParse(document.Server, out var endpoint) || !IPAddress.IsLoopback(endpoint.Address))
            {
                throw new CliError($"{path} is not a valid cluster API credential");
            }
            var ca = X509Certificate2.CreateFromPem(document.CaCertificate);
            using var pem = X509Certificate2.CreateFromPem(document.ClientCertificate, document.ClientKey);
            // SslStream wants a persisted key for client certificates: round trip through PKCS#12.
            var client = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
            return new AdminCredential(document.Server, ca, client);
        }
        catch (Exception e) when (e is JsonException or CryptographicException or ArgumentException)
        {
            throw new CliError($"{path} is not a valid cluster API credential");
        }
        finally
        {
            CryptographicOperations.ZeroMemory(bytes);
        }
    }

    private static X509Certificate2 LoadDer(byte[] der, string what)
    {
        try
        {
            return X509CertificateLoader.LoadCertificate(der);
        }
        catch (CryptographicException)
        {
            throw new CliError($"control-plane-0 returned no valid {what}");
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Ca.Dispose();
        Client.Dispose();
    }

    private sealed record FileFormat(string? Server, string? CaCertificate, string? ClientCertificate, string? ClientKey);
}
