using System.Runtime.InteropServices;
using Asterism.Fuse;

namespace Asterism.StateFs;

/// <summary>
/// Removes what a crashed node left behind (its FUSE server killed with SIGKILL included): mounts at or below the
/// state directory, loop devices whose backing file lies in the runtime directory, then mounts below the runtime
/// directory (the dead FUSE connection). Unmounts try a normal unmount first, then a lazy one (MNT_DETACH /
/// <c>fusermount3 -uz</c>). Idempotent: a clean node gives an empty list.
/// </summary>
public static partial class StateMountCleanup
{
    /// <summary>
    /// Right after the node's process was sent SIGKILL: makes sure the dying process cannot wait on itself. A thread
    /// of the node blocked in fsync waits (uninterruptibly) on ext4 → loop → the FUSE block file, whose server is that
    /// same process; the kernel aborts the FUSE connection only when the process's last thread is gone, so without
    /// help the process never dies. As root every FUSE connection mounted below <paramref name="runtimeDirectory"/> is
    /// aborted: through fusectl where it is mounted, else by umount2 with MNT_FORCE (FUSE's umount_begin aborts even
    /// while the loop device holds the file); as a user the node's fuse2fs (this user's, serving a file below the runtime directory) is killed, which
    /// ends the requests the node waits on. Returns one line per action; does nothing for a node that left nothing.
    /// </summary>
    public static IReadOnlyList<string> AbortServers(string runtimeDirectory)
    {
        ArgumentNullException.ThrowIfNull(runtimeDirectory);
        var runtime = Path.GetFullPath(runtimeDirectory).TrimEnd('/');
        var actions = new List<string>();
        if (Environment.IsPrivilegedProcess)
        {
            var fusectl = FuseControlMounted();
            foreach (var m in MountTable.Under(runtime).Where(m => m.FileSystemType.StartsWith("fuse", StringComparison.Ordinal)))
            {
                if (fusectl && TryAbortThroughFusectl(m, out var connection))
                {
                    actions.Add($"aborted FUSE connection {m.MountPoint} (fusectl {connection})");
                    continue;
                }
                // The unmount itself fails with EBUSY while the loop device holds the file; the abort has happened.
                _ = umount2(m.MountPoint, MntForce);
                actions.Add($"aborted FUSE connection {m.MountPoint}");
            }
        }
        foreach (var pid in Fuse2fsProcesses(runtime))
        {
            if (kill(pid, SigKill) == 0)
            {
                actions.Add($"killed fuse2fs {pid}");
            }
        }
        return actions;
    }

    private const string FuseControlDirectory = "/sys/fs/fuse/connections";

    private static bool FuseControlMounted() =>
        MountTable.Read().Any(m => m.MountPoint == FuseControlDirectory && m.FileSystemType == "fusectl");

    /// <summary>
    /// Aborts the mount's FUSE connection the way the kernel documents for a hung server: "1" into
    /// <c>/sys/fs/fuse/connections/N/abort</c>, N being the connection's device number (the kernel's
    /// <c>major &lt;&lt; 20 | minor</c> of the mount's <c>major:minor</c> in mountinfo). Unlike umount2 with MNT_FORCE
    /// it touches nothing but that connection. False when the number does not parse or the file is not there (the
    /// caller falls back to MNT_FORCE).
    /// </summary>
    internal static bool TryAbortThroughFusectl(MountEntry mount, out string connection)
    {
        connection = string.Empty;
        var parts = mount.Device.Split(':');
        if (parts.Length != 2
            || !uint.TryParse(parts[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var major)
            || !uint.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var minor)
            || major >= 1u << 12 || minor >= 1u << 20)
        {
            return false;
        }
        connection = ((major << 20) | minor).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var abort = Path.Combine(FuseControlDirectory, connection, "abort");
        try
        {
            File.WriteAllText(abort, "1");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>fuse2fs processes of this user whose block file lies below <paramref name="runtime"/>.</summary>
    private static List<int> Fuse2fsProcesses(string runtime)
    {
        var found = new List<int>();
        var uid = Ext4.geteuid().ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == Environment.ProcessId)
            {
                continue;
            }
            try
            {
                var argv = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0');
                if (argv.Length < 2 || Path.GetFileName(argv[0]) != "fuse2fs" || !argv[1].StartsWith(runtime + "/", StringComparison.Ordinal))
                {
                    continue;
                }
                // Real, effective, saved and filesystem uid all this user's: never signal another user's process.
                var uids = File.ReadLines(Path.Combine(dir, "status")).First(l => l.StartsWith("Uid:", StringComparison.Ordinal))
                    .Split('\t', StringSplitOptions.RemoveEmptyEntries).Skip(1);
                if (uids.All(u => u == uid))
                {
                    found.Add(pid);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException)
            {
                // The process ended while we looked.
            }
        }
        return found;
    }

    private const int MntForce = 1;
    private const int SigKill = 9;

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int umount2(string target, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

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
