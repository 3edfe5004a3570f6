using System.Buffers.Binary;
using System.Text;

namespace Asterism.Fuse;

/// <summary>Opcodes of the FUSE kernel protocol (linux/fuse.h) that this server knows by name.</summary>
public enum FuseOpcode : uint
{
    /// <summary>Look up a name in a directory.</summary>
    Lookup = 1,

    /// <summary>Drop lookups of a node (no reply).</summary>
    Forget = 2,

    /// <summary>Attributes of a node.</summary>
    GetAttr = 3,

    /// <summary>Change attributes (only the size is supported, and only to its current value).</summary>
    SetAttr = 4,

    /// <summary>Open a file.</summary>
    Open = 14,

    /// <summary>Read from an open file.</summary>
    Read = 15,

    /// <summary>Write to an open file.</summary>
    Write = 16,

    /// <summary>File-system statistics.</summary>
    StatFs = 17,

    /// <summary>Last close of an open file.</summary>
    Release = 18,

    /// <summary>fsync / fdatasync.</summary>
    Fsync = 20,

    /// <summary>close(2) of a file descriptor.</summary>
    Flush = 25,

    /// <summary>Protocol handshake, always the first request.</summary>
    Init = 26,

    /// <summary>Open a directory.</summary>
    OpenDir = 27,

    /// <summary>Read directory entries.</summary>
    ReadDir = 28,

    /// <summary>Last close of a directory.</summary>
    ReleaseDir = 29,

    /// <summary>access(2) check.</summary>
    Access = 34,

    /// <summary>Interrupt an outstanding request (no reply needed).</summary>
    Interrupt = 36,

    /// <summary>The file system is being unmounted (fuseblk).</summary>
    Destroy = 38,

    /// <summary>Forget several nodes at once (no reply).</summary>
    BatchForget = 42,
}

/// <summary>Byte layouts and constants of linux/fuse.h (protocol 7.31 and later; little-endian host).</summary>
internal static class FuseLayout
{
    public const uint KernelMajor = 7;
    public const uint KernelMinor = 38;

    /// <summary>Oldest minor version whose init_out layout (64 bytes, max_pages) we rely on.</summary>
    public const uint MinimumMinor = 28;

    public const int InHeaderSize = 40;
    public const int OutHeaderSize = 16;
    public const int InitInMinimumSize = 16;
    public const int InitOutSize = 64;
    public const int AttrSize = 88;
    public const int EntryOutSize = 40 + AttrSize;
    public const int AttrOutSize = 16 + AttrSize;
    public const int GetAttrInSize = 16;
    public const int SetAttrInSize = 88;
    public const int OpenInSize = 8;
    public const int OpenOutSize = 16;
    public const int ReadInSize = 40;
    public const int WriteInSize = 40;
    public const int WriteOutSize = 8;
    public const int StatFsOutSize = 80;
    public const int ReleaseInSize = 24;
    public const int FlushInSize = 24;
    public const int FsyncInSize = 16;
    public const int ForgetInSize = 8;
    public const int BatchForgetInSize = 8;
    public const int ForgetOneSize = 16;
    public const int AccessInSize = 8;
    public const int InterruptInSize = 8;
    public const int DirentHeaderSize = 24;

    public const int NameMax = 255;
    public const ulong RootNode = 1;

    public const uint InitAsyncRead = 1u << 0;
    public const uint InitBigWrites = 1u << 5;
    public const uint InitMaxPages = 1u << 22;

    public const uint FattrMode = 1u << 0;
    public const uint FattrUid = 1u << 1;
    public const uint FattrGid = 1u << 2;
    public const uint FattrSize = 1u << 3;

    public const uint FsyncDataOnly = 1u << 0;
}

/// <summary>The fixed header of every request the kernel sends.</summary>
internal readonly record struct FuseInHeader(uint Length, FuseOpcode Opcode, ulong Unique, ulong NodeId, uint Uid, uint Gid, uint Pid)
{
    /// <summary>
    /// Parses and checks the header of a request of <paramref name="received"/> bytes: the length field must equal the
    /// bytes read (the kernel writes whole requests), so every body parser can trust <c>Length - 40</c>.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> received, out FuseInHeader header, out string? error)
    {
        header = default;
        if (received.Length < FuseLayout.InHeaderSize)
        {
            error = $"request of {received.Length} bytes is shorter than the 40-byte header";
            return false;
        }
        var length = BinaryPrimitives.ReadUInt32LittleEndian(received);
        if (length != received.Length)
        {
            error = $"request says {length} bytes but {received.Length} were read";
            return false;
        }
        header = new FuseInHeader(
            length,
            (FuseOpcode)BinaryPrimitives.ReadUInt32LittleEndian(received[4..]),
            BinaryPrimitives.ReadUInt64LittleEndian(received[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(received[16..]),
            BinaryPrimitives.ReadUInt32LittleEndian(received[24..]),
            BinaryPrimitives.ReadUInt32LittleEndian(received[28..]),
            BinaryPrimitives.ReadUInt32LittleEndian(received[32..]));
        error = null;
        return true;
    }
}

/// <summary>Size-checked readers of request bodies; each returns false for a body too short for its struct.</summary>
internal static class FuseBody
{
    public static bool TryReadName(ReadOnlySpan<byte> body, out ReadOnlySpan<byte> name)
    {
        // A name is NUL-terminated inside the body; no NUL, an empty name or one over NAME_MAX is refused.
        var end = body.IndexOf((byte)0);
        name = end > 0 && end <= FuseLayout.NameMax ? body[..end] : default;
        return end > 0 && end <= FuseLayout.NameMax;
    }

    public static uint U32(ReadOnlySpan<byte> body, int offset) => BinaryPrimitives.ReadUInt32LittleEndian(body[offset..]);

    public static ulong U64(ReadOnlySpan<byte> body, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(body[offset..]);
}

/// <summary>Writers of reply structs into a caller's buffer.</summary>
internal static class FuseReply
{
    public static void OutHeader(Span<byte> buffer, int length, int errno, ulong unique)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(buffer, (uint)length);
        BinaryPrimitives.WriteInt32LittleEndian(buffer[4..], -errno);
        BinaryPrimitives.WriteUInt64LittleEndian(buffer[8..], unique);
    }

    public static void Attr(Span<byte> b, in FuseAttributes a)
    {
        b[..FuseLayout.AttrSize].Clear();
        var seconds = (ulong)Math.Max(0, a.ModifiedTime.ToUnixTimeSeconds());
        var nanos = (uint)(a.ModifiedTime.ToUnixTimeMilliseconds() % 1000 * 1_000_000);
        BinaryPrimitives.WriteUInt64LittleEndian(b, a.Inode);
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], a.Size);
        BinaryPrimitives.WriteUInt64LittleEndian(b[16..], (a.Size + 511) / 512);
        BinaryPrimitives.WriteUInt64LittleEndian(b[24..], seconds);
        BinaryPrimitives.WriteUInt64LittleEndian(b[32..], seconds);
        BinaryPrimitives.WriteUInt64LittleEndian(b[40..], seconds);
        BinaryPrimitives.WriteUInt32LittleEndian(b[48..], nanos);
        BinaryPrimitives.WriteUInt32LittleEndian(b[52..], nanos);
        BinaryPrimitives.WriteUInt32LittleEndian(b[56..], nanos);
        BinaryPrimitives.WriteUInt32LittleEndian(b[60..], a.Mode);
        BinaryPrimitives.WriteUInt32LittleEndian(b[64..], a.LinkCount);
        BinaryPrimitives.WriteUInt32LittleEndian(b[68..], a.Uid);
        BinaryPrimitives.WriteUInt32LittleEndian(b[72..], a.Gid);
        BinaryPrimitives.WriteUInt32LittleEndian(b[80..], 4096);
    }
}

/// <summary>Encodes directory entries (struct fuse_dirent, 8-byte aligned) into a READDIR reply of bounded size.</summary>
public ref struct FuseDirectoryWriter
{
    private readonly Span<byte> _buffer;

    internal FuseDirectoryWriter(Span<byte> buffer)
    {
        _buffer = buffer;
        Written = 0;
    }

    /// <summary>Bytes of entries written so far.</summary>
    public int Written { get; private set; }

    /// <summary>
    /// Adds an entry; <paramref name="nextOffset"/> is the cookie the kernel passes back to continue after it. False
    /// when the entry does not fit (stop and return; the kernel asks again from the last offset).
    /// </summary>
    public bool TryAdd(ulong inode, ulong nextOffset, uint direntType, string name)
    {
        var nameBytes = Encoding.UTF8.GetByteCount(name);
        if (nameBytes is 0 or > FuseLayout.NameMax)
        {
            throw new ArgumentException("A directory entry name is 1 to 255 bytes.", nameof(name));
        }
        var size = (FuseLayout.DirentHeaderSize + nameBytes + 7) & ~7;
        if (Written + size > _buffer.Length)
        {
            return false;
        }
        var b = _buffer.Slice(Written, size);
        b.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(b, inode);
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], nextOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(b[16..], (uint)nameBytes);
        BinaryPrimitives.WriteUInt32LittleEndian(b[20..], direntType);
        Encoding.UTF8.GetBytes(name, b[FuseLayout.DirentHeaderSize..]);
        Written += size;
        return true;
    }
}
