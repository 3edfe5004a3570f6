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
}
