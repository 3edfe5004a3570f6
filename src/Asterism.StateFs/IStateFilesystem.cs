namespace Asterism.StateFs;

/// <summary>What to mount where.</summary>
public sealed record StateMountRequest
{
    /// <summary>The LUKS2 image of the node's state disk.</summary>
    public required string ImagePath { get; init; }

    /// <summary>
    /// A 0700 directory of the node for private mounts (the FUSE block file lives at <c>block/disk</c> below it) or
    /// device names; created when missing.
    /// </summary>
    public required string RuntimeDirectory { get; init; }

    /// <summary>The node's <c>state</c> directory: where the ext4 filesystem appears; its root is made 0700.</summary>
    public required string MountPoint { get; init; }

    /// <summary>Run mkfs.ext4 when the volume holds no ext4 (first boot); otherwise such a volume is refused.</summary>
    public bool FormatIfNoFilesystem { get; init; }

    /// <summary>
    /// Mount read-only (the offline disaster tools): the FUSE block file refuses writes with EROFS, ext4 is mounted
    /// <c>ro</c> and the root's mode is left as it is. Cannot be combined with <see cref="FormatIfNoFilesystem"/>.
    /// </summary>
    public bool ReadOnly { get; init; }

    /// <summary>The keyslot the passphrase opens (the node's derived disk key lives in 0).</summary>
    public int Keyslot { get; init; }
}

/// <summary>
/// The node's state filesystem: ext4 inside the LUKS2 image, mounted at <see cref="StateMountRequest.MountPoint"/>.
/// Implementations: <see cref="FuseExt4StateFilesystem"/> (the payload served by our FUSE server, then a loop
/// device + kernel ext4 as root, or fuse2fs as a user) and <see cref="DmCryptStateFilesystem"/> (cryptsetup open +
/// mount, for machines with device-mapper).
/// </summary>
public interface IStateFilesystem
{
    /// <summary>Short name for logs ("fuse+loop", "fuse+fuse2fs", "dm-crypt").</summary>
    string Name { get; }

    /// <summary>The commands <see cref="MountAsync"/> runs for <paramref name="request"/>, in order (no secrets in them).</summary>
    IReadOnlyList<string> DescribeCommands(StateMountRequest request);

    /// <summary>
    /// Unlocks and mounts. Throws <see cref="StateFilesystemException"/> (WrongKey, Unsupported, NoFilesystem,
    /// ToolMissing, ToolFailed); on failure everything set up so far is undone.
    /// </summary>
    Task<IStateMount> MountAsync(StateMountRequest request, ReadOnlyMemory<byte> passphrase, CancellationToken cancellationToken);
}

/// <summary>A mounted state filesystem; disposing unmounts it and releases devices, FUSE connection and key.</summary>
public interface IStateMount : IAsyncDisposable
{
    /// <summary>Where the filesystem is mounted.</summary>
    string MountPoint { get; }

    /// <summary>The block device or file ext4 sits on (/dev/loopN, the FUSE file, /dev/mapper/NAME).</summary>
    string BlockPath { get; }
}

/// <summary>Picks the implementation for this process.</summary>
public static class StateFilesystems
{
    /// <summary>
    /// dm-crypt when the process is root and the kernel's device-mapper driver answers (<see
    /// cref="DmCryptStateFilesystem.IsAvailable"/>, not merely a /dev/mapper/control node); otherwise FUSE with a loop device as root, or
    /// fuse2fs as a user.
    /// </summary>
    public static IStateFilesystem ForThisMachine() =>
        Environment.IsPrivilegedProcess && DmCryptStateFilesystem.IsAvailable
            ? new DmCryptStateFilesystem()
            : new FuseExt4StateFilesystem(Environment.IsPrivilegedProcess ? Ext4Driver.LoopDevice : Ext4Driver.Fuse2fs);
}
