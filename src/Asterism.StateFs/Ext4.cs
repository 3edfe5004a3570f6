using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;

namespace Asterism.StateFs;

/// <summary>ext4 helpers: the superblock probe and the mkfs command line.</summary>
public static partial class Ext4
{
    /// <summary>True when <paramref name="blockPath"/> starts with an ext2/3/4 superblock (magic 0xEF53 at byte 1080).</summary>
    public static bool HasSuperblock(string blockPath)
    {
        using var handle = File.OpenHandle(blockPath, FileMode.Open, FileAccess.Read);
        Span<byte> magic = stackalloc byte[2];
        return RandomAccess.Read(handle, magic, 1024 + 56) == 2 && BinaryPrimitives.ReadUInt16LittleEndian(magic) == 0xEF53;
    }

    /// <summary>True when the device's bytes start with an ext2/3/4 superblock (the same probe as <see cref="HasSuperblock(string)"/>).</summary>
    public static bool HasSuperblock(Asterism.Disk.IBlockDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (device.Length < 4096)
        {
            return false;
        }
        // One whole 4 KiB sector, so an encrypted payload device decrypts it without read-modify-write.
        var sector = new byte[4096];
        device.Read(0, sector);
        return BinaryPrimitives.ReadUInt16LittleEndian(sector.AsSpan(1024 + 56)) == 0xEF53;
    }

    /// <summary>
    /// mkfs.ext4 arguments: quiet, forced (a regular file is fine), 4 KiB blocks, root directory owned by this
    /// process's user, no discard (the FUSE file has no hole punching), and lazy inode-table and journal
    /// initialization.
    /// </summary>
    /// <remarks>
    /// Every byte mkfs writes goes through FUSE and XTS and lands in the image: eagerly zeroing the journal and inode
    /// tables of a 256 MiB control-plane disk wrote 16 MiB (4 MiB on a 32 MiB disk) and made the image that much less
    /// sparse; lazily it writes about 250 KiB. The lazy journal is safe: jbd2 replays only blocks that carry the
    /// journal magic, the expected transaction sequence and (with metadata_csum) a valid checksum, and a fresh journal
    /// area decrypts to pseudo-random bytes, which match none of them — so a crash before the journal has wrapped once
    /// cannot replay stale data. The lazy inode tables are marked uninitialized in their (checksummed) group
    /// descriptors; the kernel never reads inodes past a group's used count and zeroes the tables in the background.
    /// </remarks>
    public static IReadOnlyList<string> MkfsArguments(string blockPath) =>
        ["-q", "-F", "-b", "4096", "-E",
            string.Create(CultureInfo.InvariantCulture, $"root_owner={geteuid()}:{getegid()},nodiscard,lazy_itable_init=1,lazy_journal_init=1"), blockPath];

    [LibraryImport("libc")]
    internal static partial uint geteuid();

    [LibraryImport("libc")]
    internal static partial uint getegid();
}
