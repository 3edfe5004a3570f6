using System.CommandLine;
using System.Globalization;
using Asterism.Cli.Recovery;
using Asterism.ControlPlane;
using Asterism.Protocol.ClusterApi;

namespace Asterism.Cli.Commands;

/// <summary>
/// <c>asterism node list|revoke NODE|remove NODE</c>: the node registry through the cluster API (mutual TLS, the
/// workspace's admin credential). Revoke and remove are recorded in the audit log before they take effect.
/// </summary>
public static class NodeCommand
{
    public static Command Create(GlobalOptions global)
    {
        var command = new Command("node", "List, revoke or remove nodes (through the authenticated cluster API)");
        var list = new Command("list", "List the nodes in the control plane's registry");
        list.SetAction(async (result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            using var credential = AdminCredential.Load(global.WorkspaceOf(result));
            using var client = new ClusterApiClient(credential);
            var response = await client.CallAsync(async api => await api.ListNodesAsync(new ListNodesRequest(), deadline: ClusterApiClient.Deadline(), cancellationToken: cancellationToken));
            var width = Math.Max(4, response.Nodes.Select(n => n.Name.Length).DefaultIfEmpty(4).Max());
            await stdout.WriteLineAsync($"{"NAME".PadRight(width)}  {"ROLE",-12} {"DISK",-36}  JOINED                REVOKED");
            foreach (var n in response.Nodes)
            {
                var joined = DateTimeOffset.FromUnixTimeMilliseconds(n.JoinedAtUnixMs).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
                var revoked = n.Revoked ? "revoked " + DateTimeOffset.FromUnixTimeMilliseconds(n.RevokedAtUnixMs).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture) : "-";
                await stdout.WriteLineAsync($"{n.Name.PadRight(width)}  {n.Role,-12} {n.DiskUuid,-36}  {joined,-20}  {revoked}");
            }
            RegistryCopySync.TryRefresh(new Workspace(global.WorkspaceOf(result)), response, null, result.InvocationConfiguration.Error);
            return 0;
        });
        command.Subcommands.Add(list);

        var revokeName = NodeArgument();
        var revoke = new Command("revoke", "Revoke a node: its rejoin is refused from then on (recorded in the audit log)") { revokeName };
        revoke.SetAction(async (result, cancellationToken) =>
        {
            var name = RequireName(result.GetValue(revokeName));
            using var credential = AdminCredential.Load(global.WorkspaceOf(result));
            using var client = new ClusterApiClient(credential);
            var response = await client.CallAsync(async api => await api.RevokeNodeAsync(new RevokeNodeRequest { Name = name }, deadline: ClusterApiClient.Deadline(), cancellationToken: cancellationToken));
            await result.InvocationConfiguration.Output.WriteLineAsync(response.Changed ? $"Revoked {name}: its rejoin is refused from now on." : $"{name} was already revoked; nothing changed.");
            // The registry said yes: the copy records the revocation at once (from the fresh list when it answers, and
            // by name in any case), so recover refuses the node even if the control plane goes down right after.
            var listed = await RegistryCopySync.TryListAsync(client, cancellationToken);
            if (RegistryCopySync.TryRefresh(new Workspace(global.WorkspaceOf(result)), listed, name, result.InvocationConfiguration.Error) is { } copy)
            {
                await result.InvocationConfiguration.Output.WriteLineAsync(RegistryCopySync.RevokedLine(name, copy));
            }
            return 0;
        });
        command.Subcommands.Add(revoke);

        var removeName = NodeArgument();
        var remove = new Command("remove", "Remove a node: its etcd membership (control planes) and its registry entry (recorded in the audit log)") { removeName };
        remove.SetAction(async (result, cancellationToken) =>
        {
            var name = RequireName(result.GetValue(removeName));
            using var credential = AdminCredential.Load(global.WorkspaceOf(result));
            using var client = new ClusterApiClient(credential);
            var response = await client.CallAsync(async api => await api.RemoveNodeAsync(new RemoveNodeRequest { Name = name }, deadline: ClusterApiClient.Deadline(), cancellationToken: cancellationToken));
            await result.InvocationConfiguration.Output.WriteLineAsync(response.WasMember ? $"Removed {name} from etcd and the registry." : $"Removed {name} from the registry.");
            if (await RegistryCopySync.TryListAsync(client, cancellationToken) is { } listed)
            {
                RegistryCopySync.TryRefresh(new Workspace(global.WorkspaceOf(result)), listed, null, result.InvocationConfiguration.Error);
            }
            else
            {
                await result.InvocationConfiguration.Error.WriteLineAsync(RegistryCopySync.NotUpdatedLine("the registry could not be listed after the removal; run 'asterism node list' to refresh it"));
            }
            return 0;
        });
        command.Subcommands.Add(remove);
        command.Subcommands.Add(NodeAddCommand.Create(global));
        return command;
    }

    private static Argument<string> NodeArgument() => new("node") { Description = "Node name" };

    /// <summary>A name the registry could never hold is refused before anything is dialled.</summary>
    internal static string RequireName(string? name) =>
        NodeNames.IsValid(name) ? name! : throw new CliError($"'{name}' is not a valid node name (1-63 of a-z, 0-9, '-')", 2);
}
