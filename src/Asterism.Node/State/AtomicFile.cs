using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Asterism.Node.State;

/// <summary>
/// Durable, all-or-nothing file writes for the state filesystem: the new content goes to a temporary file in the
/// same directory (0600), which is fsynced, renamed over the target and then the directory is fsynced. After a
/// crash the target holds the old or the new content, never a mix; once <see cref="Write"/> returned the new content
/// survives a power cut. Temporary files start with <see cref="TempPrefix"/> so readers can skip and remove them.
/// </summary>
public static partial class AtomicFile
{
    /// <summary>Names beginning with this are temporary files of an unfinished write.</summary>
    public const string TempPrefix = ".tmp-";

    private const UnixFileMode FileMode0600 = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode DirectoryMode0700 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>Replaces <paramref name="path"/> with <paramref name="content"/> atomically and durably (file 0600).</summary>
    public static void Write(string path, ReadOnlySpan<byte> content)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = Path.GetFullPath(path);
        var directory = Path.GetDirectoryName(full) ?? throw new ArgumentException("a file path needs a directory", nameof(path));
        var temp = Path.Combine(directory, TempPrefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)) + "-" + Path.GetFileName(full));
        try
        {
            using (var stream = new FileStream(temp, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                Share = FileShare.None,
                UnixCreateMode = FileMode0600,
            }))
            {
                stream.Write(content);
                stream.Flush(flushToDisk: true);
            }
            // rename(2): the directory entry switches from the old inode to the new one in one step.
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
        SyncDirectory(directory);
    }

    /// <summary>
    /// Creates <paramref name="path"/> (0700) and every missing parent below an existing directory, fsyncing each
    /// parent whose entry list changed, so the new directory survives a power cut too.
    /// </summary>
    public static void CreateDirectory(string path)
    {
        var full = Path.GetFullPath(path).TrimEnd('/');
        if (Directory.Exists(full))
        {
            return;
        }
        var parent = Path.GetDirectoryName(full) ?? throw new ArgumentException("cannot create the root", nameof(path));
        CreateDirectory(parent);
        Directory.CreateDirectory(full, DirectoryMode0700);
        SyncDirectory(parent);
    }

    /// <summary>Removes temporary files that a crash left in <paramref name="directory"/>; returns how many.</summary>
    public static int RemoveLeftovers(string directory)
    {
        if (!Directory.Exists(directory))
        {
            return 0;
        }
        var removed = 0;
        foreach (var file in Directory.EnumerateFiles(directory, TempPrefix + "*"))
        {
            File.Delete(file);
            removed++;
        }
        if (removed > 0)
        {
            SyncDirectory(directory);
        }
        return removed;
    }

    /// <summary>fsync of a directory: makes renames and new entries in it durable.</summary>
    public static void SyncDirectory(string directory)
    {
        var fd = open(directory, ORdOnly | ODirectory | OCloexec);
        if (fd < 0)
        {
            throw new IOException($"cannot open directory {directory} to sync it (errno {Marshal.GetLastPInvokeError()})");
        }
        try
        {
            if (fsync(fd) != 0)
            {
                throw new IOException($"fsync of directory {directory} failed (errno {Marshal.GetLastPInvokeError()})");
            }
        }
        finally
        {
            _ = close(fd);
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The write already failed; a leftover temporary file is removed at the next boot.
        }
    }

    private const int ORdOnly = 0;
    private const int ODirectory = 0x10000;
    private const int OCloexec = 0x80000;

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(int fd);

    [LibraryImport("libc")]
    private static partial int close(int fd);
}
