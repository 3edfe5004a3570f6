namespace Asterism.Cloud;

/// <summary>
/// Everything of a workspace that may still run when its provider cannot be asked to stop (killed with SIGKILL, hung,
/// or refusing the credential): the provider named by cloud.json, each node named by its node.pid, each swtpm named by
/// its swtpm.pid, and any node or swtpm whose command line names a directory of the workspace's instances directory as
/// its node or state directory. Every one is checked before it is signalled (this user's process, start time where
/// recorded, a command line naming this workspace), so a PID reused by an unrelated process is never touched, nor is a
/// process of another user whose command line imitates a node's (<see cref="ProcessIdentity.Of"/>), nor the
/// operator's own <c>tail -f</c> of a console log.
/// </summary>
public static class LeftoverProcesses
{
    /// <summary>What runs: the provider first, then nodes and TPMs.</summary>
    public static IReadOnlyList<(string What, ProcessIdentity Process)> Find(CloudWorkspace workspace)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        var found = new List<(string, ProcessIdentity)>();
        try
        {
            if (File.Exists(workspace.StatePath) && CloudState.Load(workspace.StatePath).RunningProvider() is { } provider
                && provider.CommandLine().Contains(workspace.WorkspaceDir, StringComparison.Ordinal))
            {
                found.Add(("provider", provider));
            }
        }
        catch (CloudConfigException)
        {
            // An unreadable cloud.json names nothing; the command-line scan below still finds the nodes.
        }
        // What only a node (--node-dir DIR) or its swtpm (--tpmstate dir=DIR,mode=0600) has on its command line.
        var nodeArgument = " --node-dir " + workspace.InstancesDir + Path.DirectorySeparatorChar;
        var tpmArgument = " dir=" + workspace.InstancesDir + Path.DirectorySeparatorChar;
        if (Directory.Exists(workspace.InstancesDir))
        {
            foreach (var dir in Directory.EnumerateDirectories(workspace.InstancesDir))
            {
                var name = Path.GetFileName(dir);
                foreach (var (what, file) in new[] { ("node " + name, Path.Combine(dir, "node.pid")), ("TPM of " + name, Path.Combine(dir, "tpm", "swtpm.pid")) })
                {
                    if (ProcessIdentity.ReadPidFile(file, out _) is { } p && p.CommandLine().Contains(dir + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                    {
                        found.Add((what, p));
                    }
                }
            }
        }
        // Nodes or TPMs whose PID file is gone (a crash between start and write): their command lines name the directory.
        if (Directory.Exists("/proc"))
        {
            foreach (var dir in Directory.EnumerateDirectories("/proc"))
            {
                if (int.TryParse(Path.GetFileName(dir), out var pid) && pid != Environment.ProcessId && found.All(f => f.Item2.Pid != pid)
                    && ProcessIdentity.Of(pid) is { } p && p.CommandLine() is var commandLine
                    && (commandLine.Contains(nodeArgument, StringComparison.Ordinal) || commandLine.Contains(tpmArgument, StringComparison.Ordinal)))
                {
                    found.Add(("process " + pid, p));
                }
            }
        }
        return found;
    }

    /// <summary>SIGKILLs what <see cref="Find"/> names, provider first (so it starts nothing more), and waits until all are gone.</summary>
    public static async Task<IReadOnlyList<(string What, ProcessIdentity Process)>> KillAsync(CloudWorkspace workspace, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var found = Find(workspace);
        foreach (var (_, process) in found)
        {
            process.Signal(ProcessIdentity.SigKill);
        }
        foreach (var (what, process) in found)
        {
            if (!await process.WaitGoneAsync(timeout, TimeProvider.System, cancellationToken).ConfigureAwait(false))
            {
                throw new LocalCloudException($"{what} (PID {process.Pid}) still runs {timeout.TotalSeconds:0} s after SIGKILL");
            }
        }
        return found;
    }
}
