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
        finally
        {
            // The PEM of a private key is key material too.
            Array.Clear(bytes);
        }
    }

    /// <summary>Reads a file that must be private: refuses one that group or others can read.</summary>
    public static string ReadPrivate(string path)
    {
        if (!File.Exists(path))
        {
            throw new ControlPlaneException(ControlPlaneError.Files, $"{path} is missing");
        }
        if ((File.GetUnixFileMode(path) & ~PrivateFileMode) != 0)
        {
            throw new ControlPlaneException(ControlPlaneError.Files, $"{path} is readable by others; expected mode 0600");
        }
        return File.ReadAllText(path);
    }
}
