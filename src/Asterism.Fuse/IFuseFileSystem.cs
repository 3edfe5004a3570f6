namespace Asterism.Fuse;

/// <summary>Attributes of a node as the kernel sees them (struct fuse_attr).</summary>
/// <param name="Inode">Node id (also the inode number shown by stat).</param>
/// <param name="Size">Size in bytes.</param>
/// <param name="Mode">File type and permission bits (S_IFREG | 0600, S_IFDIR | 0700, ...).</param>
/// <param name="LinkCount">Hard links.</param>
/// <param name="Uid">Owner.</param>
/// <param name="Gid">Group.</param>
/// <param name="ModifiedTime">Reported as atime, mtime and ctime.</param>
public readonly record struct FuseAttributes(ulong Inode, ulong Size, uint Mode, uint LinkCount, uint Uid, uint Gid, DateTimeOffset ModifiedTime);

/// <summary>File-system statistics (struct fuse_kstatfs).</summary>
/// <param name="Blocks">Total blocks of <paramref name="BlockSize"/> bytes.</param>
/// <param name="FreeBlocks">Free blocks.</param>
/// <param name="Files">Total nodes.</param>
/// <param name="BlockSize">Block size in bytes.</param>
public readonly record struct FuseStatFs(ulong Blocks, ulong FreeBlocks, ulong Files, uint BlockSize);

/// <summary>What OPEN tells the kernel about the open file (FOPEN_* flags).</summary>
[Flags]
public enum FuseOpenFlags : uint
{
    /// <summary>Page cache as usual.</summary>
    None = 0,

    /// <summary>Bypass the page cache: every read and write reaches the server.</summary>
    DirectIo = 1u << 0,

    /// <summary>Keep cached data across opens.</summary>
    KeepCache = 1u << 1,

    /// <summary>Allow concurrent direct writes on the same inode.</summary>
    ParallelDirectWrites = 1u << 6,
}

/// <summary>The local user a request comes from (from the request header; the kernel fills it in).</summary>
/// <param name="Uid">User id.</param>
/// <param name="Gid">Group id.</param>
/// <param name="Pid">Process id (0 for kernel-internal requests such as the loop driver's).</param>
public readonly record struct FuseCaller(uint Uid, uint Gid, uint Pid);

/// <summary>
/// The operations <see cref="FuseSession"/> dispatches to. Each returns 0 or a positive errno (ENOENT, EIO, ...)
/// that goes to the caller of the system call; exceptions become EIO. Called from several threads at once.
/// </summary>
public interface IFuseFileSystem
{
    /// <summary>Looks up <paramref name="name"/> (UTF-8, 1–255 bytes, no NUL) in directory <paramref name="parent"/>.</summary>
    int Lookup(ulong parent, ReadOnlySpan<byte> name, out FuseAttributes attributes);

    /// <summary>Attributes of <paramref name="node"/>.</summary>
    int GetAttributes(ulong node, out FuseAttributes attributes);

    /// <summary>Changes the size of <paramref name="node"/> (truncate); other attribute changes are refused by the session.</summary>
    int SetSize(ulong node, ulong size, out FuseAttributes attributes);

    /// <summary>Opens <paramref name="node"/> with open(2) <paramref name="flags"/>.</summary>
    int Open(ulong node, int flags, FuseCaller caller, out ulong handle, out FuseOpenFlags openFlags);

    /// <summary>Reads up to <paramref name="destination"/>.Length bytes at <paramref name="offset"/>; fewer only at the end.</summary>
    int Read(ulong node, ulong handle, long offset, Span<byte> destination, out int count);

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/>; <paramref name="count"/> is what was written.</summary>
    int Write(ulong node, ulong handle, long offset, ReadOnlySpan<byte> data, out int count);

    /// <summary>close(2) of a descriptor of <paramref name="node"/>.</summary>
    int Flush(ulong node, ulong handle);

    /// <summary>fsync(2): when it returns 0 the data written before is durable.</summary>
    int Fsync(ulong node, ulong handle, bool dataOnly);

    /// <summary>Last close of <paramref name="handle"/>.</summary>
    int Release(ulong node, ulong handle);

    /// <summary>statfs(2).</summary>
    int StatFs(out FuseStatFs statFs);

    /// <summary>Opens directory <paramref name="node"/>.</summary>
    int OpenDir(ulong node, FuseCaller caller, out ulong handle);

    /// <summary>Writes the entries after cookie <paramref name="offset"/> (0 = from the start) until the writer is full.</summary>
    int ReadDir(ulong node, ulong handle, ulong offset, ref FuseDirectoryWriter writer);

    /// <summary>Last close of a directory handle.</summary>
    int ReleaseDir(ulong node, ulong handle);

    /// <summary>access(2) with mask R_OK=4 / W_OK=2 / X_OK=1 / F_OK=0.</summary>
    int Access(ulong node, int mask, FuseCaller caller);

    /// <summary>The kernel dropped <paramref name="lookups"/> references to <paramref name="node"/>.</summary>
    void Forget(ulong node, ulong lookups);
}
