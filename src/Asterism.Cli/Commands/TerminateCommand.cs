using System.CommandLine;

namespace Asterism.Cli.Commands;

/// <summary>
/// <c>asterism terminate</c>: stops the provider and every instance and removes the provider's runtime files and the
/// state file. The configuration and the master secret stay unless --purge is given.
/// </summary>
public static class TerminateCommand
{
    public static Command Create(GlobalOptions global)
    {
        var purge = new Option<bool>("--purge") { Description = "Also delete the master secret and the configuration" };
        var command = new Command("terminate", "Stop every node and the local provider and remove the cluster's runtime files") { purge };
        command.SetAction(async (result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var workspace = new Workspace(global.WorkspaceOf(result));
            workspace.RequireCluster();
            var cloud = Asterism.Cloud.LocalCloudClient.TryConnect(workspace.Directory);
            if (cloud is not null)
            {
                using (cloud)
                {
                    await cloud.ShutdownAsync(TimeSpan.FromSeconds(30), cancellationToken);
                }
                await stdout.WriteLineAsync("Stopped the local provider and every node.");
            }
            else if (KillOrphanedNodes(workspace.Cloud.InstancesDir) is > 0 and var orphans)
            {
                await stdout.WriteLineAsync($"The local provider was not running; stopped {orphans} node processes it had left behind.");
            }
            if (Directory.Exists(workspace.Cloud.CloudDir))
            {
                Directory.Delete(workspace.Cloud.CloudDir, recursive: true);
            }
            File.Delete(workspace.StatePath);
            if (result.GetValue(purge))
            {
                File.Delete(workspace.MasterSecretPath);
                File.Delete(workspace.ConfigPath);
                await stdout.WriteLineAsync("Removed the master secret and the configuration.");
            }
            else if (File.Exists(workspace.MasterSecretPath))
            {
                await stdout.WriteLineAsync($"Kept {workspace.MasterSecretPath} and {workspace.ConfigPath} (use --purge to remove them).");
            }
            await stdout.WriteLineAsync("Terminated.");
            return 0;
        });
        return command;
    }

    /// <summary>
    /// A provider that died without stopping its instances (SIGKILL, OOM) leaves node processes running. They are
    /// found by their <c>--disk</c> argument inside this workspace's instances directory and killed (a node is
    /// crash-safe by design), before the directory they run from is removed.
    /// </summary>
    private static int KillOrphanedNodes(string instancesDir)
    {
        if (!OperatingSystem.IsLinux() || !Directory.Exists("/proc"))
        {
            return 0;
        }
        var prefix = Path.GetFullPath(instancesDir) + Path.DirectorySeparatorChar;
        var killed = 0;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == Environment.ProcessId)
            {
                continue;
            }
            try
            {
                var args = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0');
                var disk = Array.IndexOf(args, "--disk");
                if (disk < 0 || disk + 1 >= args.Length || !args[disk + 1].StartsWith(prefix, StringComparison.Ordinal))
                {
                    continue;
                }
                using var process = System.Diagnostics.Process.GetProcessById(pid);
                process.Kill();
                process.WaitForExit(TimeSpan.FromSeconds(10));
                killed++;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException
                or System.ComponentModel.Win32Exception)
            {
                // Gone meanwhile, or not ours to kill.
            }
        }
        return killed;
    }
}
