using Asterism.Fuse;

namespace Asterism.StateFs;

/// <summary>
/// Removes what a crashed node left behind (its FUSE server killed with SIGKILL included): mounts at or below the
/// state directory, loop devices whose backing file lies in the runtime directory, then mounts below the runtime
/// directory (the dead FUSE connection). Unmounts try a normal unmount first, then a lazy one (MNT_DETACH /
/// <c>fusermount3 -uz</c>). Idempotent: a clean node gives an empty list.
/// </summary>
public static class StateMountCleanup
{
    /// <summary>Cleans up; returns one line per action taken.</summary>
    public static async Task<IReadOnlyList<string>> CleanAsync(string runtimeDirectory, string mountPoint, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(runtimeDirectory);
        ArgumentNullException.ThrowIfNull(mountPoint);
        var runtime = Path.GetFullPath(runtimeDirectory).TrimEnd('/');
        var actions = new List<string>();
        foreach (var m in MountTable.Under(mountPoint))
        {
            actions.Add(Unmount(m));
        }
        if (Environment.IsPrivilegedProcess)
        {
            foreach (var (device, back) in await MountTable.LoopDevicesAsync(cancellationToken))
            {
                if (back.StartsWith(runtime + "/", StringComparison.Ordinal))
                {
                    await CommandRunner.CheckedAsync("losetup", ["-d", device], cancellationToken);
                    actions.Add($"losetup -d {device} ({back})");
                }
            }
        }
        foreach (var m in MountTable.Under(runtime))
        {
            actions.Add(Unmount(m));
        }
        return actions;
    }

    private static string Unmount(MountEntry m)
    {
        var method = Environment.IsPrivilegedProcess ? FuseMountMethod.Kernel : FuseMountMethod.Fusermount;
        try
        {
            FuseMount.Unmount(m.MountPoint, method, lazy: false);
            return $"unmounted {m.MountPoint} ({m.FileSystemType})";
        }
        catch (IOException)
        {
            FuseMount.Unmount(m.MountPoint, method, lazy: true);
            return $"detached {m.MountPoint} ({m.FileSystemType})";
        }
    }
}
