using System.CommandLine;
using Asterism.Cloud;

namespace Asterism.Cli.Commands;

/// <summary><c>asterism power stop|start|reboot|crash (NODE…|--all)</c>: power actions to rehearse outages.</summary>
public static class PowerCommand
{
    public static Command Create(GlobalOptions global)
    {
        var action = new Argument<string>("action") { Description = "stop (clean), start, reboot, or crash (kill without warning)" };
        action.AcceptOnlyFromAmong("stop", "start", "reboot", "crash");
        var nodes = new Argument<string[]>("nodes") { Description = "Node names", Arity = ArgumentArity.ZeroOrMore };
        var all = new Option<bool>("--all") { Description = "Every node" };
        var command = new Command("power", "Stop, start, reboot or crash nodes") { action, nodes, all };
        command.SetAction(async (result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var names = result.GetValue(nodes) ?? [];
            var everyNode = result.GetValue(all);
            if (everyNode == (names.Length > 0))
            {
                throw new CliError("name the nodes or pass --all (not both)", 2);
            }
            var workspace = new Workspace(global.WorkspaceOf(result));
            workspace.RequireCluster();
            // Checked here, so a typo gets the names to choose from instead of the provider's bare 400.
            workspace.RequireNodes(names);
            using var cloud = workspace.ConnectProvider();
            PowerResponse response;
            try
            {
                response = await cloud.PowerAsync(result.GetValue(action)!, everyNode ? null : names, cancellationToken);
            }
            catch (MetadataException ex)
            {
                throw new CliError(ex.Message);
            }
            foreach (var r in response.Results)
            {
                await stdout.WriteLineAsync(r.Error is null ? $"{r.Name}: {r.Action} -> {r.Power}{(r.Changed ? "" : " (unchanged)")}" : $"{r.Name}: {r.Error}");
            }
            return 0;
        });
        return command;
    }
}
