using Asterism.StateFs;

namespace Asterism.Cloud;

/// <summary>
/// What a node leaves mounted when it dies without unmounting (power crash, SIGKILL): its ext4 mount at
/// <c>node/state</c>, the loop device on its FUSE block file and the dead FUSE connection at <c>node/run/block</c>
/// (or a fuse2fs mount, whose process exits once the mount is gone). The provider removes them after a node stopped
/// and before it starts one; <c>terminate</c> removes them before deleting the instance directories, so a recursive
/// delete never walks into a mount. Run only for a node that is not running: cleaning unmounts unconditionally.
/// </summary>
public static class NodeMounts
{
    /// <summary>Cleans one instance; returns one line per action (empty when nothing was left).</summary>
    public static async Task<IReadOnlyList<string>> CleanAsync(CloudWorkspace workspace, string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        var actions = new List<string>(AbortServers(workspace, name));
        actions.AddRange(await StateMountCleanup.CleanAsync(workspace.NodeRuntimeDir(name), workspace.NodeStateDir(name), cancellationToken));
        return actions;
    }

    /// <summary>
    /// Right after a node was sent SIGKILL: aborts its FUSE connection (root) or kills its fuse2fs (user), so a node
    /// thread blocked in fsync on its own FUSE server cannot keep the dying process alive (see
    /// <see cref="StateMountCleanup.AbortServers"/>).
    /// </summary>
    public static IReadOnlyList<string> AbortServers(CloudWorkspace workspace, string name)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        return StateMountCleanup.AbortServers(workspace.NodeRuntimeDir(name));
    }

    /// <summary>Cleans every instance directory of the workspace; returns what was done, per instance.</summary>
    public static async Task<IReadOnlyList<string>> CleanAllAsync(CloudWorkspace workspace, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        var actions = new List<string>();
        if (!Directory.Exists(workspace.InstancesDir))
        {
            return actions;
        }
        foreach (var instance in Directory.EnumerateDirectories(workspace.InstancesDir).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(instance);
            actions.AddRange((await CleanAsync(workspace, name, cancellationToken)).Select(a => $"{name}: {a}"));
        }
        return actions;
    }
}
