using System.Text;

namespace Asterism.ControlPlane;

/// <summary>Writes key material as the security rules want it: files 0600 in a 0700 directory, replaced atomically.</summary>
internal static class SecureFiles
{
    public const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    public const UnixFileMode PrivateFileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>
    /// Creates the directory 0700, or tightens an existing one to 0700: the caller gave it to us to hold keys, and a
    /// wider mode would let other local users read them.
    /// </summary>
    public static void EnsurePrivateDirectory(string path)
    {
        if (!Directory.Exists(path))
        {
            // Directory.CreateDirectory gives the mode to the last directory only: ancestors it has to make get the
            // default (0755 under the usual umask), so each missing ancestor is made here first, 0700 too.
            var parent = Path.GetDirectoryName(Path.GetFullPath(path));
            if (parent is not null && !Directory.Exists(parent))
            {
                EnsurePrivateDirectory(parent);
            }
            Directory.CreateDirectory(path, DirectoryMode);
        }
        if (File.GetUnixFileMode(path) != DirectoryMode)
        {
            File.SetUnixFileMode(path, DirectoryMode);
        }
    }

    /// <summary>Writes <paramref name="text"/> to a 0600 temporary file next to the target, then renames it over it.</summary>
    public static void WritePrivate(string path, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        try
        {
            WritePrivate(path, bytes);
        }
        finally
        {
            // The PEM of a private key is key material too.
            Array.Clear(bytes);
        }
    }

    /// <summary>Writes <paramref name="bytes"/> to a 0600 temporary file next to the target, then renames it over it; the caller zeroes its buffer.</summary>
    public static void WritePrivate(string path, ReadOnlySpan<byte> bytes)
    {
        var temp = path + ".tmp";
        File.Delete(temp);
        using (var stream = new FileStream(temp, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            UnixCreateMode = PrivateFileMode,
        }))
        {
            stream.Write(bytes);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Reads a file that must be private: refuses one that group or others can read.</summary>
    public static string ReadPrivate(string path)
    {
        CheckPrivate(path);
        return File.ReadAllText(path);
    }

    private static void CheckPrivate(string path)
    {
        if (!File.Exists(path))
        {
            throw new ControlPlaneException(ControlPlaneError.Files, $"{path} is missing");
        }
        if ((File.GetUnixFileMode(path) & ~PrivateFileMode) != 0)
        {
            throw new ControlPlaneException(ControlPlaneError.Files, $"{path} is readable by others; expected mode 0600");
        }
    }

    /// <summary>
    /// Reads a private key's PEM file (which must be private) as characters the caller zeroes
    /// (<see cref="Array.Clear(Array)"/>); a string could not be.
    /// </summary>
    public static char[] ReadPrivateKeyPem(string path)
    {
        CheckPrivate(path);
        var bytes = File.ReadAllBytes(path);
        try
        {
            return Encoding.UTF8.GetChars(bytes);
        }
        finally
        {
            Array.Clear(bytes);
        }
    }
}
