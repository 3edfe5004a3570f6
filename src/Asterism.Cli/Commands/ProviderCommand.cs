using System.CommandLine;
using Asterism.Cloud;

namespace Asterism.Cli.Commands;

/// <summary>
/// <c>asterism provider start</c>: restarts the local provider of a workspace whose provider died (SIGKILL, OOM, a
/// reboot of the provider alone). The new provider adopts every node still running — the same process, checked by
/// PID, start time and command line — and leaves the others stopped; nothing is booted or killed that ran fine.
/// </summary>
public static class ProviderCommand
{
    public static Command Create(GlobalOptions global)
    {
        var start = new Command("start", "Restart the local provider and adopt the nodes still running (after it was killed)");
        start.SetAction(async (result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var workspace = new Workspace(global.WorkspaceOf(result));
            workspace.RequireCluster();
            if (LocalCloudClient.TryConnect(workspace.Directory) is { } running)
            {
                using (running)
                {
                    await stdout.WriteLineAsync($"The local provider already runs (PID {running.State.Pid}).");
                }
                return 0;
            }
            if (LeftoverProcesses.Find(workspace.Cloud).FirstOrDefault(p => p.What == "provider") is { What: not null } hung)
            {
                throw new CliError($"the provider (PID {hung.Process.Pid}) still runs but does not answer; 'asterism terminate' stops it and its nodes");
            }
            LocalCloudClient cloud;
            try
            {
                cloud = await LocalCloudClient.StartProviderAsync(workspace.Directory, new ProviderLaunchOptions { ExtraArgs = ["--adopt"] }, cancellationToken);
            }
            catch (Exception e) when (e is LocalCloudException or CloudConfigException)
            {
                throw new CliError(e.Message);
            }
            using (cloud)
            {
                var instances = await cloud.ListAsync(cancellationToken);
                var adopted = instances.Where(i => i.IsRunning).Select(i => i.Name).ToList();
                var stopped = instances.Where(i => !i.IsRunning).Select(i => i.Name).ToList();
                await stdout.WriteLineAsync($"Started the local provider (PID {cloud.State.Pid}).");
                await stdout.WriteLineAsync(adopted.Count > 0 ? $"Adopted {adopted.Count} running nodes: {string.Join(", ", adopted)}." : "No node was left running.");
                if (stopped.Count > 0)
                {
                    await stdout.WriteLineAsync($"Stopped: {string.Join(", ", stopped)} (start them with 'asterism power start NODE…' or --all).");
                }
            }
            return 0;
        });
        return new Command("provider", "The local provider (asterism-cloud) of this workspace") { start };
    }
}
