using System.CommandLine;

namespace Asterism.Cli.Commands;

/// <summary>
/// <c>asterism terminate</c>: stops the provider and every instance and removes the provider's runtime files, the
/// nodes' state disks (said on stdout; <c>--keep-disks</c> keeps them) and the state file. The configuration and the
/// master secret stay unless --purge is given. Works when the provider is gone or does not answer.
/// </summary>
public static class TerminateCommand
{
    public static Command Create(GlobalOptions global)
    {
        var purge = new Option<bool>("--purge") { Description = "Also delete the master secret and the configuration" };
        var keepDisks = new Option<bool>("--keep-disks") { Description = $"Keep the nodes' state disks (moved to {KeptDisksDirectory}/NAME.img) instead of deleting them" };
        var command = new Command("terminate", "Stop every node and the local provider and remove the cluster's runtime files, state disks included") { purge, keepDisks };
        command.SetAction(async (result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var stderr = result.InvocationConfiguration.Error;
            var workspace = new Workspace(global.WorkspaceOf(result));
            workspace.RequireCluster();
            var disks = Directory.Exists(workspace.Cloud.InstancesDir)
                ? Directory.EnumerateDirectories(workspace.Cloud.InstancesDir).Select(d => Path.Combine(d, "disk.img")).Where(File.Exists).Order(StringComparer.Ordinal).ToList()
                : [];
            var kept = Path.Combine(workspace.Directory, KeptDisksDirectory);
            string KeptPath(string disk) => Path.Combine(kept, Path.GetFileName(Path.GetDirectoryName(disk)!) + ".img");
            if (result.GetValue(keepDisks) && disks.FirstOrDefault(d => File.Exists(KeptPath(d))) is { } taken)
            {
                // Checked before anything is stopped: a kept disk is never overwritten.
                throw new CliError($"{KeptPath(taken)} exists (kept by an earlier terminate); move it away first");
            }
            await StopEverythingAsync(workspace, stdout, stderr, cancellationToken);
            // Nothing runs any more: what a killed node left mounted goes before its directory is deleted, so the
            // recursive delete never walks into a mount and no loop device or FUSE connection of the cluster remains.
            var cleaned = await Asterism.Cloud.NodeMounts.CleanAllAsync(workspace.Cloud, cancellationToken);
            if (cleaned.Count > 0)
            {
                await stdout.WriteLineAsync($"Removed state mounts the nodes left: {string.Join("; ", cleaned)}.");
            }
            if (result.GetValue(keepDisks) && disks.Count > 0)
            {
                Asterism.Cloud.OwnerOnly.CreateDirectory(kept);
                foreach (var disk in disks)
                {
                    File.Move(disk, KeptPath(disk), overwrite: false);
                }
                await stdout.WriteLineAsync($"Kept the state disks of {disks.Count} nodes in {kept} (LUKS2; 'asterism disk extract' opens them with the master secret).");
            }
            else if (disks.Count > 0)
            {
                await stdout.WriteLineAsync($"Deleted the state disks of {disks.Count} nodes, with every node's data ('terminate --keep-disks' keeps them).");
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

    /// <summary>Where <c>--keep-disks</c> moves the state disks, as NAME.img (directory 0700, images 0600 as they were).</summary>
    public const string KeptDisksDirectory = "asterism-disks";

    /// <summary>
    /// Asks the provider to stop everything; when it is gone, hung or refuses the credential, stops what it left by the
    /// PIDs the workspace records (each checked against its start time and command line, see
    /// <see cref="Asterism.Cloud.LeftoverProcesses"/>), so nothing of the cluster runs on when the files go.
    /// </summary>
    private static async Task StopEverythingAsync(Workspace workspace, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken)
    {
        var cloud = Asterism.Cloud.LocalCloudClient.TryConnect(workspace.Directory, out var reason);
        if (cloud is not null)
        {
            using (cloud)
            {
                try
                {
                    await cloud.ShutdownAsync(TimeSpan.FromSeconds(30), cancellationToken);
                    await stdout.WriteLineAsync("Stopped the local provider and every node.");
                    return;
                }
                catch (Exception e) when (e is Asterism.Cloud.MetadataException or Asterism.Cloud.LocalCloudException or HttpRequestException
                    or TaskCanceledException && !cancellationToken.IsCancellationRequested)
                {
                    reason = $"the provider did not shut down: {e.Message}";
                }
            }
        }
        var killed = await Asterism.Cloud.LeftoverProcesses.KillAsync(workspace.Cloud, TimeSpan.FromSeconds(10), cancellationToken);
        if (killed.Count > 0)
        {
            await stderr.WriteLineAsync($"Warning: {reason}");
            await stdout.WriteLineAsync($"Stopped by PID what the provider left running: {string.Join(", ", killed.Select(k => $"{k.What} ({k.Process.Pid})"))}.");
        }
    }
}
