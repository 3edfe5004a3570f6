using System.Security.Cryptography;
using System.Text;

namespace Asterism.Attestation.Identities;

/// <summary>
/// The identity files the provider leaves in a node's directory (mode 0700) before it starts the node: the provider
/// CA certificate, the node's identity certificate and, for the simulated variant, the attestation key the provider
/// generated. The node reads them and never creates them: a process that is not an instance of the provider has none.
/// </summary>
public static class IdentityFiles
{
    public const string AuthorityFileName = "provider-ca.pem";
    public const string CertificateFileName = "identity.pem";

    private const int MaxPemBytes = 16 * 1024;

    public static string AuthorityPath(string nodeDirectory) => Path.Combine(nodeDirectory, AuthorityFileName);

    public static string CertificatePath(string nodeDirectory) => Path.Combine(nodeDirectory, CertificateFileName);

    /// <summary>Reads a PEM CERTIFICATE file (size-limited) and returns its DER; throws <see cref="InvalidDataException"/> naming the file.</summary>
    public static byte[] ReadCertificate(string path)
    {
        byte[] bytes;
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                throw new InvalidDataException($"{path} does not exist: this node has no identity from its provider");
            }
            if (info.Length > MaxPemBytes)
            {
                throw new InvalidDataException($"{path} is larger than {MaxPemBytes} bytes");
            }
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"{path} cannot be read: {e.Message}");
        }
        var text = Encoding.ASCII.GetString(bytes);
        if (!PemEncoding.TryFind(text, out var fields) || text[fields.Label] is not "CERTIFICATE")
        {
            throw new InvalidDataException($"{path} holds no PEM CERTIFICATE");
        }
        return Convert.FromBase64String(text[fields.Base64Data].ToString());
    }

    /// <summary>Writes DER as a PEM CERTIFICATE file with mode 0600, atomically (temp file, fsync, rename).</summary>
    public static void WriteCertificate(string path, ReadOnlySpan<byte> der) =>
        WritePrivateFile(path, EncodeCertificate(der));

    /// <summary>The PEM file content <see cref="WriteCertificate"/> writes, for writers that create files their own way.</summary>
    public static byte[] EncodeCertificate(ReadOnlySpan<byte> der) =>
        Encoding.ASCII.GetBytes(PemEncoding.WriteString("CERTIFICATE", der) + "\n");

    /// <summary>Writes <paramref name="content"/> to <paramref name="path"/> with mode 0600 through a temp file, fsync and rename.</summary>
    public static void WritePrivateFile(string path, ReadOnlySpan<byte> content)
    {
        var temp = path + ".tmp-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }
        try
        {
            using (var file = new FileStream(temp, options))
            {
                file.Write(content);
                file.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }
}
