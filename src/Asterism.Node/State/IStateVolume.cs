using Asterism.StateFs;

namespace Asterism.Node.State;

/// <summary>Opens the node's state for a delivered disk key: the mounted state filesystem, or a plain directory in tests.</summary>
public interface IStateVolume
{
    /// <summary>
    /// Unlocks keyslot 0 with <paramref name="diskKey"/> and makes the state available; null when the key does not
    /// open keyslot 0. <paramref name="formatIfEmpty"/> (first boot only) creates the filesystem when there is none.
    /// Other failures throw (<see cref="StateFilesystemException"/>, <see cref="IOException"/>).
    /// </summary>
    Task<NodeStateDirectory?> OpenAsync(ReadOnlyMemory<byte> diskKey, bool formatIfEmpty, CancellationToken cancellationToken);
}

/// <summary>
/// The real one: ext4 inside the LUKS2 image mounted at <c>NODE_DIR/state</c> through
/// <see cref="StateFilesystems.ForThisMachine"/> (FUSE + loop as root, FUSE + fuse2fs as a user), runtime files
/// (the FUSE block file) under <c>NODE_DIR/run</c>. Both directories are the node's own, 0700, no allow_other.
/// </summary>
public sealed class MountedStateVolume(NodeOptions options) : IStateVolume
{
    private static readonly UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <inheritdoc />
    public async Task<NodeStateDirectory?> OpenAsync(ReadOnlyMemory<byte> diskKey, bool formatIfEmpty, CancellationToken cancellationToken)
    {
        // The mount point is 0700 before anything is mounted on it, so nothing is ever reachable through a wider mode.
        Directory.CreateDirectory(options.StateDirectory, OwnerOnly);
        File.SetUnixFileMode(options.StateDirectory, OwnerOnly);
        var filesystem = StateFilesystems.ForThisMachine();
        var request = new StateMountRequest
        {
            ImagePath = options.DiskPath,
            RuntimeDirectory = options.RuntimeDirectory,
            MountPoint = options.StateDirectory,
            FormatIfNoFilesystem = formatIfEmpty,
        };
        try
        {
            var mount = await filesystem.MountAsync(request, diskKey, cancellationToken);
            return new NodeStateDirectory(mount.MountPoint, mount, filesystem.Name);
        }
        catch (StateFilesystemException e) when (e.Error == StateFilesystemError.WrongKey)
        {
            return null;
        }
    }
}
