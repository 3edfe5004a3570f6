using System.Runtime.InteropServices;

namespace Asterism.Cloud;

/// <summary>
/// Files of the operator's workspace, the provider and its instances are the owner's alone: files 0600,
/// directories 0700. Two layers: the executables (CLI, provider, node) set their umask to 077 first thing, so
/// nothing they or their children (sh, swtpm) create can be forgotten; and the places that create a file or
/// directory say the mode explicitly, so an embedding process (tests) with umask 022 gets the same result.
/// </summary>
public static partial class OwnerOnly
{
    public const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    public const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>Any permission bit for group or others.</summary>
    public const UnixFileMode GroupOrOther =
        UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute |
        UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    /// <summary>Sets the process umask to 077 (every later file 0600, directory 0700 at most). Returns the previous umask.</summary>
    public static uint RestrictProcessUmask() => OperatingSystem.IsWindows() ? 0 : Umask(0x3F) /* 077 octal */;

    /// <summary>
    /// Creates a directory and its missing parents as 0700 (Directory.CreateDirectory gives parents the umask's
    /// mode), and tightens the directory itself to 0700 if it already existed; existing parents keep their mode.
    /// </summary>
    public static void CreateDirectory(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(path);
            return;
        }
        var full = Path.GetFullPath(path);
        var missing = new Stack<string>();
        for (var dir = full; dir is not null && !Directory.Exists(dir); dir = Path.GetDirectoryName(dir))
        {
            missing.Push(dir);
        }
        while (missing.TryPop(out var dir))
        {
            Directory.CreateDirectory(dir, DirectoryMode);
            File.SetUnixFileMode(dir, DirectoryMode);
        }
        File.SetUnixFileMode(full, DirectoryMode);
    }

    /// <summary>Writes a whole file created as 0600 (an existing file is truncated and tightened to 0600).</summary>
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        using var stream = new FileStream(path, Options(System.IO.FileMode.Create, FileAccess.Write));
        Restrict(path);
        stream.Write(bytes);
    }

    /// <summary>Writes a whole UTF-8 text file created as 0600.</summary>
    public static void WriteAllText(string path, string text) => WriteAllBytes(path, System.Text.Encoding.UTF8.GetBytes(text));

    /// <summary>Makes sure a file exists (created empty if missing) with mode 0600; its content is kept.</summary>
    public static void Touch(string path)
    {
        using (new FileStream(path, Options(System.IO.FileMode.Append, FileAccess.Write)))
        {
        }
        Restrict(path);
    }

    /// <summary>Sets a file's mode to 0600.</summary>
    public static void Restrict(string path)
    {
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, FileMode);
        }
    }

    /// <summary>True when group or others have any permission on the file or directory.</summary>
    public static bool IsOpenToOthers(string path) =>
        !OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & GroupOrOther) != 0;

    /// <summary>The command that fixes a secret file readable by others.</summary>
    public static string ChmodHint(string path) => $"chmod 600 '{path}'";

    /// <summary>FileStreamOptions that create the file 0600.</summary>
    public static FileStreamOptions Options(System.IO.FileMode mode, FileAccess access)
    {
        var options = new FileStreamOptions { Mode = mode, Access = access };
        if (!OperatingSystem.IsWindows() && mode != System.IO.FileMode.Open)
        {
            options.UnixCreateMode = FileMode;
        }
        return options;
    }

    [LibraryImport("libc", EntryPoint = "umask")]
    private static partial uint Umask(uint mask);
}
