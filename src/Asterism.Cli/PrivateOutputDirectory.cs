using System.Runtime.InteropServices;
using Asterism.Cloud;

namespace Asterism.Cli;

/// <summary>
/// An output directory the CLI (often run as root) writes secrets and identities into: it must be the caller's own
/// real directory. A directory another user made (in /tmp, say) lets that user swap or link the files written into
/// it, and a symbolic link sends the writes wherever its owner likes, so both are refused before anything happens;
/// a missing directory is created 0700, an own one tightened to 0700, after which nobody else can plant anything in it.
/// </summary>
internal static partial class PrivateOutputDirectory
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1;
    private const uint StatxMode = 0x2;
    private const uint StatxUid = 0x8;
    private const int Enoent = 2;

    /// <summary>
    /// Refuses <paramref name="path"/> (full) when it exists as anything but a directory of the effective user: a
    /// symbolic link, a non-directory or another user's directory is a <see cref="CliError"/> naming
    /// <paramref name="option"/>. Creates and changes nothing, so it can run before any work.
    /// </summary>
    public static void Check(string path, string option)
    {
        if (!OperatingSystem.IsWindows() && Inspect(path) is { } entry)
        {
            Verify(path, option, entry);
        }
    }

    /// <summary>
    /// Makes sure <paramref name="path"/> (full) is a directory the effective user owns, mode 0700, creating it if
    /// missing; refuses as <see cref="Check"/> does, checking again after creating because what counts is what is
    /// there now, whoever made it.
    /// </summary>
    public static void Prepare(string path, string option)
    {
        if (OperatingSystem.IsWindows())
        {
            OwnerOnly.CreateDirectory(path);
            return;
        }
        if (Inspect(path) is null)
        {
            OwnerOnly.CreateDirectory(path);
        }
        var entry = Inspect(path) ?? throw new CliError($"{option} {path} vanished while it was being created");
        Verify(path, option, entry);
        File.SetUnixFileMode(path, OwnerOnly.DirectoryMode);
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

    private sealed record Entry(bool IsSymbolicLink, bool IsDirectory, uint Uid);

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
        // struct statx: stx_uid at 20, stx_mode (16 bits) at 28.
        var uid = BitConverter.ToUInt32(buffer, 20);
        var type = BitConverter.ToUInt16(buffer, 28) & 0xF000;
        return new Entry(type == 0xA000, type == 0x4000, uid);
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx(int dirfd, string path, int flags, uint mask, byte[] buffer);

    [LibraryImport("libc")]
    private static partial uint geteuid();
}
