using System.CommandLine;
using Asterism.Cloud;

namespace Asterism.Cli.Commands;

/// <summary>
/// <c>asterism node add --control-plane</c>: asks the provider for one more control-plane instance and starts it (a
/// replacement for a member removed with <c>node remove</c>). The node joins like any control plane: attested by a
/// JoinService, added to etcd as a learner and promoted, registered and audited. Only control planes: workers are
/// planned at <c>create</c>.
/// </summary>
public static class NodeAddCommand
{
    public static Command Create(GlobalOptions global)
    {
        var controlPlane = new Option<bool>("--control-plane") { Description = "Add a control-plane node (required: the only kind that can be added)" };
        var command = new Command("add", "Add a control-plane node to the running cluster; it joins through the JoinServices") { controlPlane };
        command.SetAction(async (result, cancellationToken) =>
        {
            if (!result.GetValue(controlPlane))
            {
                throw new CliError("only control-plane nodes can be added: pass --control-plane", 2);
            }
            var workspace = new Workspace(global.WorkspaceOf(result));
            workspace.RequireCluster();
            using var cloud = workspace.ConnectProvider();
            InstanceInfo added;
            try
            {
                added = await cloud.AddControlPlaneAsync(cancellationToken);
            }
            catch (MetadataException ex)
            {
                throw new CliError(ex.Message);
            }
            await result.InvocationConfiguration.Output.WriteLineAsync($"Added {added.Name} at {added.Address}; it joins the control plane through the JoinServices (watch 'asterism status').");
            return 0;
        });
        return command;
    }
}
