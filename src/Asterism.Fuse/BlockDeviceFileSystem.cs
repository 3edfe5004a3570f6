using System.Text;
using Asterism.Disk;

namespace Asterism.Fuse;

/// <summary>
/// A FUSE tree of one directory holding one regular file whose bytes are an <see cref="IBlockDevice"/>: the file
/// has the device's size, cannot grow, shrink, be renamed or removed; reads and writes go to the device, FLUSH
/// and FSYNC call <see cref="IBlockDevice.Flush"/>, so an acknowledged fsync is durable on the device. The
/// directory is 0700 and the file 0600, both owned by the mounting user.
/// </summary>
public sealed class BlockDeviceFileSystem : IFuseFileSystem
{
    /// <summary>Node id of the file (the root directory is 1).</summary>
    public const ulong FileNode = 2;

    private const uint DirectoryMode = 0x4000 | 0x1C0; // S_IFDIR | 0700
    private const uint FileMode = 0x8000 | 0x180; // S_IFREG | 0600
    private const uint ReadOnlyFileMode = 0x8000 | 0x100; // S_IFREG | 0400
    private const uint DirentDirectory = 4;
    private const uint DirentRegular = 8;

    private readonly IBlockDevice _device;
    private readonly byte[] _name;
    private readonly string _fileName;
    private readonly uint _uid;
    private readonly uint _gid;
    private readonly ulong _size;
    private readonly DateTimeOffset _time;
    private readonly bool _directIo;
    private readonly bool _readOnly;
    private long _fsyncs;

    /// <summary>Serves <paramref name="device"/> as <paramref name="fileName"/>; the device stays owned by the caller.</summary>
    /// <param name="device">The bytes of the file.</param>
    /// <param name="fileName">Name of the file (1–255 bytes, no '/').</param>
    /// <param name="directIo">Bypass the page cache (every read and write reaches the device; no double caching
    /// under a loop device).</param>
    /// <param name="timeProvider">Source of the tree's time stamps.</param>
    /// <param name="readOnly">Serve the file 0400 and refuse opening it for writing, writes and size changes with
    /// EROFS, before the device is touched.</param>
    public BlockDeviceFileSystem(IBlockDevice device, string fileName = "disk", bool directIo = true, TimeProvider? timeProvider = null, bool readOnly = false)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(fileName);
        _name = Encoding.UTF8.GetBytes(fileName);
        if (_name.Length is 0 or > 255 || fileName.Contains('/', StringComparison.Ordinal) || fileName.Contains('\0', StringComparison.Ordinal) || fileName is "." or "..")
        {
            throw new ArgumentException("The file name must be 1 to 255 bytes without '/' or NUL.", nameof(fileName));
        }
        _device = device;
        _fileName = fileName;
        _size = (ulong)device.Length;
        _uid = Native.geteuid();
        _gid = Native.getegid();
        _time = (timeProvider ?? TimeProvider.System).GetUtcNow();
        _directIo = directIo;
        _readOnly = readOnly;
    }

    /// <summary>True when the file refuses writes (EROFS).</summary>
    public bool IsReadOnly => _readOnly;

    /// <summary>Name of the file in the mount's root.</summary>
    public string FileName => _fileName;

    /// <summary>FSYNC and FLUSH requests served so far (tests show durability requests reach the device).</summary>
    public long FsyncCount => Interlocked.Read(ref _fsyncs);

    /// <inheritdoc />
    public int Lookup(ulong parent, ReadOnlySpan<byte> name, out FuseAttributes attributes)
    {
        attributes = default;
        if (parent != 1)
        {
            return Native.ENOTDIR;
        }
        if (!name.SequenceEqual(_name))
        {
            return Native.ENOENT;
        }
        attributes = FileAttributes();
        return 0;
    }

    /// <inheritdoc />
    public int GetAttributes(ulong node, out FuseAttributes attributes)
    {
        attributes = node switch
        {
            1 => new FuseAttributes(1, 4096, DirectoryMode, 2, _uid, _gid, _time),
            FileNode => FileAttributes(),
            _ => default,
        };
        return node is 1 or FileNode ? 0 : Native.ENOENT;
    }

    /// <inheritdoc />
    public int SetSize(ulong node, ulong size, out FuseAttributes attributes)
    {
        attributes = default;
        if (node != FileNode)
        {
            return node == 1 ? Native.EISDIR : Native.ENOENT;
        }
        if (_readOnly)
        {
            return Native.EROFS;
        }
        // A block device has a fixed size: truncating to the current size (O_TRUNC-free tools do) is fine, any
        // other size is refused rather than silently ignored.
        if (size != _size)
        {
            return Native.EPERM;
        }
        attributes = FileAttributes();
        return 0;
    }

    /// <inheritdoc />
    public int Open(ulong node, int flags, FuseCaller caller, out ulong handle, out FuseOpenFlags openFlags)
    {
        handle = 0;
        openFlags = FuseOpenFlags.None;
        if (node != FileNode)
        {
            return node == 1 ? Native.EISDIR : Native.ENOENT;
        }
        const int OAccessMode = 0x3;
        const int OTrunc = 0x200;
        if (_readOnly && ((flags & OAccessMode) != 0 || (flags & OTrunc) != 0))
        {
            return Native.EROFS;
        }
        if ((flags & OTrunc) != 0 && _size != 0)
        {
            return Native.EPERM;
        }
        openFlags = _directIo ? FuseOpenFlags.DirectIo | FuseOpenFlags.ParallelDirectWrites : FuseOpenFlags.KeepCache;
        return 0;
    }

    /// <inheritdoc />
    public int Read(ulong node, ulong handle, long offset, Span<byte> destination, out int count)
    {
        count = 0;
        if (node != FileNode)
        {
            return Native.EISDIR;
        }
        if ((ulong)offset >= _size)
        {
            return 0;
        }
        var n = (int)Math.Min((ulong)destination.Length, _size - (ulong)offset);
        _device.Read(offset, destination[..n]);
        count = n;
        return 0;
    }

    /// <inheritdoc />
    public int Write(ulong node, ulong handle, long offset, ReadOnlySpan<byte> data, out int count)
    {
        count = 0;
        if (node != FileNode)
        {
            return Native.EISDIR;
        }
        if (_readOnly)
        {
            return Native.EROFS;
        }
        if (data.Length == 0)
        {
            return 0;
        }
        if ((ulong)offset >= _size)
        {
            return Native.ENOSPC;
        }
        var n = (int)Math.Min((ulong)data.Length, _size - (ulong)offset);
        _device.Write(offset, data[..n]);
        count = n;
        return 0;
    }

    /// <inheritdoc />
    public int Flush(ulong node, ulong handle) => Sync(node);

    /// <inheritdoc />
    public int Fsync(ulong node, ulong handle, bool dataOnly) => Sync(node);

    /// <inheritdoc />
    public int Release(ulong node, ulong handle) => 0;

    /// <inheritdoc />
    public int StatFs(out FuseStatFs statFs)
    {
        statFs = new FuseStatFs((_size + 4095) / 4096, 0, 2, 4096);
        return 0;
    }

    /// <inheritdoc />
    public int OpenDir(ulong node, FuseCaller caller, out ulong handle)
    {
        handle = 0;
        return node == 1 ? 0 : node == FileNode ? Native.ENOTDIR : Native.ENOENT;
    }

    /// <inheritdoc />
    public int ReadDir(ulong node, ulong handle, ulong offset, ref FuseDirectoryWriter writer)
    {
        if (node != 1)
        {
            return Native.ENOTDIR;
        }
        // Cookies: the entry at index i continues at i + 1.
        if (offset < 1 && !writer.TryAdd(1, 1, DirentDirectory, "."))
        {
            return 0;
        }
        if (offset < 2 && !writer.TryAdd(1, 2, DirentDirectory, ".."))
        {
            return 0;
        }
        if (offset < 3)
        {
            writer.TryAdd(FileNode, 3, DirentRegular, _fileName);
        }
        return 0;
    }

    /// <inheritdoc />
    public int ReleaseDir(ulong node, ulong handle) => 0;

    /// <inheritdoc />
    public int Access(ulong node, int mask, FuseCaller caller)
    {
        // default_permissions makes the kernel check modes before it asks; this answers the same for the owner only.
        if (node is not (1 or FileNode))
        {
            return Native.ENOENT;
        }
        return caller.Uid == _uid || mask == 0 ? 0 : Native.EACCES;
    }

    /// <inheritdoc />
    public void Forget(ulong node, ulong lookups)
    {
        // Both nodes live as long as the mount: nothing to release.
    }

    private int Sync(ulong node)
    {
        if (node != FileNode || _readOnly)
        {
            return 0;
        }
        _device.Flush();
        Interlocked.Increment(ref _fsyncs);
        return 0;
    }

    private FuseAttributes FileAttributes() => new(FileNode, _size, _readOnly ? ReadOnlyFileMode : FileMode, 1, _uid, _gid, _time);
}
