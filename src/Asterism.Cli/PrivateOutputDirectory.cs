using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.Win32.SafeHandles;

namespace Asterism.Cli;

/// <summary>
/// An output directory the CLI (often run as root) writes secrets and identities into: it must be the caller's own
/// real directory. A directory another user made (in /tmp, say) lets that user swap or link the files written into
/// it, and a symbolic link sends the writes wherever its owner likes, so both are refused.
/// Checking a path and then writing by path is not enough: under a parent others may write to (not sticky) the
/// directory can be renamed away and replaced by a link between the check and the write. So <see cref="Open"/>
/// opens the directory once (O_DIRECTORY|O_NOFOLLOW, created with mkdirat when missing), checks owner and type on
/// that descriptor, makes it 0700 with fchmod, and every file is then created relative to it (openat with
/// O_CREAT|O_EXCL|O_NOFOLLOW, 0600, then renameat): whatever happens to the path afterwards, the bytes land in the
/// verified directory, where nobody else can plant anything. Intermediate path components are followed as usual.
/// </summary>
internal sealed partial class PrivateOutputDirectory : IDisposable
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const int AtEmptyPath = 0x1000;
    private const uint StatxType = 0x1;
    private const uint StatxMode = 0x2;
    private const uint StatxUid = 0x8;
    private const int ORdOnly = 0x0;
    private const int OWrOnly = 0x1;
    private const int OCreat = 0x40;
    private const int OExcl = 0x80;
    private const int OCloExec = 0x80000;
    private const int Enoent = 2;
    private const int Eexist = 17;
    private const int Enotdir = 20;
    private const int Eloop = 40;
    private const int MaxReadBytes = 64 * 1024;

    // O_DIRECTORY and O_NOFOLLOW differ between x86-64 (and most others) and the ARM ports.
    private static readonly bool IsArm = RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm;
    private static readonly int ODirectory = IsArm ? 0x4000 : 0x10000;
    private static readonly int ONoFollow = IsArm ? 0x8000 : 0x20000;

    private readonly SafeFileHandle _directory;

    private PrivateOutputDirectory(string path, SafeFileHandle directory)
    {
        Path = path;
        _directory = directory;
    }

    /// <summary>The path the directory was opened by (it may have been moved since; the writes follow the directory).</summary>
    public string Path { get; }

    /// <summary>
    /// Refuses <paramref name="path"/> (full) when it exists as anything but a directory of the effective user: a
    /// symbolic link, a non-directory or another user's directory is a <see cref="CliError"/> naming
    /// <paramref name="option"/>. Creates and changes nothing, so it can run before any work (an early, friendly
    /// answer; <see cref="Open"/> checks again on what it actually writes into).
    /// </summary>
    public static void Check(string path, string option)
    {
        if (Inspect(path) is { } entry)
        {
            Verify(path, option, entry);
        }
    }

    /// <summary>
    /// Opens <paramref name="path"/> (full) as the effective user's own directory, creating it 0700 if missing and
    /// tightening it to 0700; refuses a symbolic link, a non-directory or another user's directory as
    /// <see cref="Check"/> does, judged on the opened descriptor itself.
    /// </summary>
    public static PrivateOutputDirectory Open(string path, string option)
    {
        var parentPath = System.IO.Path.GetDirectoryName(path) ?? throw new CliError($"{option} {path} has no parent directory", 2);
        var name = System.IO.Path.GetFileName(path);
        if (name.Length == 0)
        {
            throw new CliError($"{option} {path} names no directory", 2);
        }
        if (!Directory.Exists(parentPath))
        {
            // Missing ancestors are made as before (0700); only the final component needs the descriptor discipline.
            Directory.CreateDirectory(parentPath, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        using var parent = Handle(open(parentPath, ORdOnly | ODirectory | OCloExec, 0), $"cannot open the parent of {option} {path}");
        if (mkdirat(parent, name, 0x1C0) != 0)
        {
            var mkdirError = Marshal.GetLastPInvokeError();
            if (mkdirError != Eexist)
            {
                throw new CliError($"cannot create {option} {path}: {Marshal.GetPInvokeErrorMessage(mkdirError)}");
            }
        }
        var fd = openat(parent, name, ORdOnly | ODirectory | ONoFollow | OCloExec, 0);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            // ELOOP, or ENOTDIR (O_DIRECTORY is checked first on some kernels): a link, unless a plain file sits there
            // now; a link that was swapped in and out again while we opened it is still reported as a link.
            if (errno == Eloop || (errno == Enotdir && Inspect(path) is not { IsSymbolicLink: false, IsDirectory: false }))
            {
                throw new CliError($"{option} {path} is a symbolic link; give a real directory of your own");
            }
            if (errno == Enotdir)
            {
                throw new CliError($"{option} {path} is not a directory; give a node directory", 2);
            }
            throw new CliError($"cannot open {option} {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
        var directory = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            var entry = Stat(directory, path);
            Verify(path, option, entry);
            if (fchmod(directory, 0x1C0) != 0)
            {
                throw new CliError($"cannot make {option} {path} private: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            }
            return new PrivateOutputDirectory(path, directory);
        }
        catch
        {
            directory.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Writes <paramref name="content"/> as <paramref name="name"/> (one path component) in this directory, mode 0600:
    /// a fresh random temp name created with O_EXCL|O_NOFOLLOW, fsync, then renameat over whatever sits at the name
    /// (a planted link is replaced, not followed).
    /// </summary>
    public void WriteFile(string name, ReadOnlySpan<byte> content)
    {
        CheckName(name);
        var temp = name + ".tmp-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        var fd = openat(_directory, temp, OWrOnly | OCreat | OExcl | ONoFollow | OCloExec, 0x180);
        if (fd < 0)
        {
            throw new CliError($"cannot write {System.IO.Path.Combine(Path, name)}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }
        try
        {
            using (var file = new SafeFileHandle(fd, ownsHandle: true))
            {
                RandomAccess.Write(file, content, 0);
                if (fsync(file) != 0)
                {
                    throw new CliError($"cannot write {System.IO.Path.Combine(Path, name)}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
                }
            }
            if (renameat(_directory, temp, _directory, name) != 0)
            {
                throw new CliError($"cannot write {System.IO.Path.Combine(Path, name)}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            }
        }
        catch
        {
            unlinkat(_directory, temp, 0);
            throw;
        }
    }

    /// <summary>
    /// The bytes of the regular file <paramref name="name"/> in this directory, or null when there is none, it is
    /// longer than <paramref name="maxLength"/> or group/world accessible (a link is not followed): a caller rewrites it.
    /// </summary>
    public byte[]? ReadFile(string name, int maxLength)
    {
        CheckName(name);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxLength, MaxReadBytes);
        var fd = openat(_directory, name, ORdOnly | ONoFollow | OCloExec, 0);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return errno is Enoent or Eloop ? null : throw new CliError($"cannot read {System.IO.Path.Combine(Path, name)}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
        using var file = new SafeFileHandle(fd, ownsHandle: true);
        var entry = Stat(file, System.IO.Path.Combine(Path, name));
        if (entry.IsDirectory || (entry.Mode & 0x3F) != 0)
        {
            return null;
        }
        var length = RandomAccess.GetLength(file);
        if (length > maxLength)
        {
            return null;
        }
        var bytes = new byte[length];
        return RandomAccess.Read(file, bytes, 0) == bytes.Length ? bytes : null;
    }

    public void Dispose() => _directory.Dispose();

    private static void CheckName(string name)
    {
        if (name.Length == 0 || name.Contains('/', StringComparison.Ordinal) || name is "." or "..")
        {
            throw new ArgumentException("a file name, not a path", nameof(name));
        }
    }

    private static SafeFileHandle Handle(int fd, string what)
    {
        if (fd < 0)
        {
            throw new CliError($"{what}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    private static void Verify(string path, string option, Entry entry)
    {
        if (entry.IsSymbolicLink)
        {
            throw new CliError($"{option} {path} is a symbolic link; give a real directory of your own");
        }
        if (!entry.IsDirectory)
        {
            throw new CliError($"{option} {path} is not a directory; give a node directory", 2);
        }
        if (entry.Uid != geteuid())
        {
            throw new CliError($"{option} {path} belongs to uid {entry.Uid}, not to you (uid {geteuid()}); give a directory of your own");
        }
    }

    private sealed record Entry(bool IsSymbolicLink, bool IsDirectory, uint Uid, int Mode);

    /// <summary>statx without following a final symbolic link (its layout is the same on every architecture); null when absent.</summary>
    private static Entry? Inspect(string path)
    {
        var buffer = new byte[256];
        if (statx(AtFdCwd, path, AtSymlinkNoFollow, StatxType | StatxMode | StatxUid, buffer) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno == Enoent)
            {
                return null;
            }
            throw new CliError($"cannot inspect {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
        return ParseStatx(buffer);
    }

    /// <summary>statx of an open descriptor (AT_EMPTY_PATH): what was opened, not what the path names now.</summary>
    private static Entry Stat(SafeFileHandle handle, string path)
    {
        var buffer = new byte[256];
        if (statx(checked((int)handle.DangerousGetHandle()), "", AtEmptyPath | AtSymlinkNoFollow, StatxType | StatxMode | StatxUid, buffer) != 0)
        {
            throw new CliError($"cannot inspect {path}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }
        GC.KeepAlive(handle);
        return ParseStatx(buffer);
    }

    // struct statx: stx_uid at 20, stx_mode (16 bits) at 28.
    private static Entry ParseStatx(byte[] buffer)
    {
        var uid = BitConverter.ToUInt32(buffer, 20);
        var mode = BitConverter.ToUInt16(buffer, 28);
        var type = mode & 0xF000;
        return new Entry(type == 0xA000, type == 0x4000, uid, mode & 0xFFF);
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx(int dirfd, string path, int flags, uint mask, byte[] buffer);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags, uint mode);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int openat(SafeFileHandle dirfd, string path, int flags, uint mode);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int mkdirat(SafeFileHandle dirfd, string path, uint mode);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int renameat(SafeFileHandle olddirfd, string oldpath, SafeFileHandle newdirfd, string newpath);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int unlinkat(SafeFileHandle dirfd, string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fchmod(SafeFileHandle fd, uint mode);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(SafeFileHandle fd);

    [LibraryImport("libc")]
    private static partial uint geteuid();
}
