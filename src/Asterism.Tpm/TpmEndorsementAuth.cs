using System.Security.Cryptography;

namespace Asterism.Tpm;

/// <summary>
/// The endorsement hierarchy's authorisation value of a TPM the local provider manufactured: 32 random bytes,
/// set with TPM2_HierarchyChangeAuth and kept in a 0600 file in the node's 0700 directory. Whoever wants to create
/// the attestation key (an endorsement primary) or use the EK needs it, so a process that somehow reached the TPM
/// still cannot derive the node's AK. The bytes never appear in a log or an exception.
/// </summary>
public static class TpmEndorsementAuth
{
    /// <summary>The file name inside the node directory.</summary>
    public const string FileName = "tpm-endorsement-auth";

    /// <summary>Length of the value: the size of a SHA-256 digest, the most a TPM2B_AUTH of a SHA-256 TPM takes.</summary>
    public const int Length = 32;

    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>A fresh random value.</summary>
    public static byte[] Generate() => RandomNumberGenerator.GetBytes(Length);

    /// <summary>Writes <paramref name="auth"/> to DIR/<see cref="FileName"/> (0600, atomically via a temp file and rename).</summary>
    public static void Save(string directory, ReadOnlySpan<byte> auth)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (auth.Length != Length)
        {
            throw new ArgumentException($"the endorsement auth is {Length} bytes", nameof(auth));
        }
        var path = Path.Combine(directory, FileName);
        // A fresh random name opened with O_CREAT|O_EXCL: a file or symbolic link planted under a predictable temp
        // name cannot redirect the write; rename then replaces whatever sits at the final name without following it.
        var temp = path + ".tmp-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        try
        {
            using (var stream = new FileStream(temp, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                UnixCreateMode = OwnerOnly,
            }))
            {
                File.SetUnixFileMode(stream.SafeFileHandle, OwnerOnly);
                stream.Write(auth);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    /// <summary>
    /// Reads DIR/<see cref="FileName"/>, or returns null when it does not exist. Refuses a file that group or
    /// others can access or that is not exactly <see cref="Length"/> bytes (<see cref="TpmException"/>).
    /// </summary>
    public static byte[]? Load(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
        {
            return null;
        }
        var mode = File.GetUnixFileMode(path);
        if ((mode & ~(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute)) != 0)
        {
            throw new TpmException($"{path} is accessible to group or others; run chmod 600 on it");
        }
        var info = new FileInfo(path);
        if (info.Length != Length)
        {
            throw new TpmException($"{path} does not hold a {Length}-byte endorsement auth");
        }
        return File.ReadAllBytes(path);
    }
}
