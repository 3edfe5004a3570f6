using System.Security.Cryptography;
using System.Text;

namespace Asterism.Attestation.Simulated;

/// <summary>
/// A node's software attestation key (ECDSA P-256), persisted as PKCS#8 PEM in the node directory with mode 0600.
/// It stands in for a TPM attestation key on local clusters and in tests; it is never a security boundary.
/// </summary>
public sealed class SimulatedAttestationKey : IDisposable
{
    public const string FileName = "simulated-attestation-key.pem";

    private readonly ECDsa _key;

    private SimulatedAttestationKey(ECDsa key)
    {
        _key = key;
        PublicKeySpki = key.ExportSubjectPublicKeyInfo();
        Fingerprint = FingerprintOf(PublicKeySpki);
    }

    /// <summary>DER SubjectPublicKeyInfo of the public key.</summary>
    public byte[] PublicKeySpki { get; }

    /// <summary>Lowercase hex SHA-256 of <see cref="PublicKeySpki"/>; what validators list as trusted.</summary>
    public string Fingerprint { get; }

    public static SimulatedAttestationKey Create() => new(ECDsa.Create(ECCurve.NamedCurves.nistP256));

    /// <summary>Loads the key from <paramref name="directory"/>, creating it (mode 0600) when absent.</summary>
    public static SimulatedAttestationKey LoadOrCreate(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, FileName);
        if (File.Exists(path))
        {
            return Load(path);
        }
        var key = Create();
        try
        {
            key.Save(path);
            return key;
        }
        catch (IOException) when (File.Exists(path))
        {
            // Another process created it first: use theirs so both agree.
            key.Dispose();
            return Load(path);
        }
    }

    public static SimulatedAttestationKey Load(string path)
    {
        if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite)) != 0)
        {
            throw new InvalidDataException($"attestation key file {path} is accessible by group or others; expected mode 0600");
        }
        var bytes = File.ReadAllBytes(path);
        var chars = new char[bytes.Length];
        try
        {
            var count = Encoding.ASCII.GetChars(bytes, chars);
            var key = ECDsa.Create();
            try
            {
                key.ImportFromPem(chars.AsSpan(0, count));
            }
            catch (ArgumentException e)
            {
                key.Dispose();
                throw new InvalidDataException($"attestation key file {path} holds no PKCS#8 PEM private key", e);
            }
            if (key.KeySize != 256)
            {
                key.Dispose();
                throw new InvalidDataException($"attestation key file {path} does not hold a P-256 key");
            }
            return new SimulatedAttestationKey(key);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(bytes);
            CryptographicOperations.ZeroMemory(MemoryMarshalBytes(chars));
        }
    }

    /// <summary>Writes the private key as PKCS#8 PEM to <paramref name="path"/> with mode 0600; fails if the file exists.</summary>
    public void Save(string path)
    {
        var der = _key.ExportPkcs8PrivateKey();
        var pem = PemEncoding.Write("PRIVATE KEY", der);
        var bytes = new byte[pem.Length + 1];
        try
        {
            Encoding.ASCII.GetBytes(pem, bytes);
            bytes[^1] = (byte)'\n';
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }
            using var file = new FileStream(path, options);
            file.Write(bytes);
            file.Flush(flushToDisk: true);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(der);
            CryptographicOperations.ZeroMemory(MemoryMarshalBytes(pem));
            CryptographicOperations.ZeroMemory(bytes);
        }
    }

    /// <summary>Signs <paramref name="data"/> with SHA-256; the signature is IEEE P1363 (r ‖ s, 64 bytes).</summary>
    public byte[] Sign(ReadOnlySpan<byte> data) =>
        _key.SignData(data, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);

    public static string FingerprintOf(ReadOnlySpan<byte> spki) => Convert.ToHexStringLower(SHA256.HashData(spki));

    public void Dispose() => _key.Dispose();

    public override string ToString() => "[redacted]";

    private static Span<byte> MemoryMarshalBytes(char[] chars) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(chars.AsSpan());
}
