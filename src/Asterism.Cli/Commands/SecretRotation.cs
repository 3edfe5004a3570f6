using System.CommandLine;
using Asterism.Config;
using Asterism.Crypto;
using Asterism.Protocol;
using Asterism.Protocol.ClusterApi;
using Google.Protobuf;

namespace Asterism.Cli.Commands;

/// <summary>
/// <c>asterism secret rotate [--shares N --threshold K -r …]</c> begins a master-secret rotation: a new secret is
/// written to the workspace first (<c>asterism-mastersecret.next.json</c>, 0600, or as new shares), then sent to the
/// control plane over the mutual-TLS cluster API, which seals it under the current secret in etcd. <c>--status</c>
/// lists the nodes still on the old generation; <c>--complete</c> finishes once none is left: the control plane
/// audits the old generation void, and the workspace's secret file and cluster ID move to the new generation.
/// </summary>
public static class SecretRotation
{
    /// <summary>Where the next generation's secret waits until the rotation completes.</summary>
    public const string NextFileName = "asterism-mastersecret.next.json";

    /// <summary>The new cluster ID (it derives from the new secret) while the rotation is pending.</summary>
    public const string PendingFileName = "asterism-rotation.json";

    /// <summary>
    /// Why beginning a rotation is refused in this build, or null once the nodes move their keyslots and confirm.
    /// </summary>
    internal static string? NotAvailableReason { get; } =
        "the nodes do not move their disk keys to a new generation yet, so a rotation begun now could never complete ('--status' still works)";

    public static Command Create(GlobalOptions global)
    {
        var options = new ShareOptions();
        var complete = new Option<bool>("--complete") { Description = "Finish the rotation once every node is on the new generation; the old secret and its shares become void" };
        var status = new Option<bool>("--status") { Description = "Show the rotation and the nodes still on the old generation" };
        var command = new Command("rotate", "Rotate the master secret: every node's disk gets a key from a new secret, then the old secret and its shares are void")
        {
            complete, status,
        };
        options.AddTo(command, required: false);
        command.SetAction(async (result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var workspace = new Workspace(global.WorkspaceOf(result));
            workspace.RequireCluster();
            var state = SecretCommand.RequireInitialized(workspace);
            if (!result.GetValue(status) && !result.GetValue(complete) && NotAvailableReason is { } reason)
            {
                // Refused before anything is written or sent: a begun rotation no node can follow could never complete.
                throw new CliError("rotation is not available yet: " + reason);
            }
            using var credential = AdminCredential.Load(workspace.Directory);
            using var client = new ClusterApiClient(credential);
            if (result.GetValue(status))
            {
                var current = await client.CallAsync(async api => await api.GetRotationAsync(new GetRotationRequest(), deadline: ClusterApiClient.Deadline(), cancellationToken: cancellationToken));
                await WriteStatusAsync(stdout, current);
                return 0;
            }
            if (result.GetValue(complete))
            {
                var done = await client.CallAsync(async api => await api.CompleteRotationAsync(new CompleteRotationRequest(), deadline: ClusterApiClient.Deadline(), cancellationToken: cancellationToken));
                FinishWorkspace(workspace, state);
                await stdout.WriteLineAsync($"Rotation complete: generation {done.CurrentGeneration} is current; generation {done.VoidGeneration} is void (its master secret and shares open no disk; the audit log says so).");
                return 0;
            }
            var request = options.RequestOf(result, workspace);
            var pendingPath = Path.Combine(workspace.Directory, PendingFileName);
            var nextPath = Path.Combine(workspace.Directory, NextFileName);
            if (File.Exists(pendingPath))
            {
                throw new CliError($"a rotation was begun from this workspace ({pendingPath}); check it with 'asterism secret rotate --status' and finish it with '--complete'");
            }
            // The new secret reaches the operator's disk (as a file or as shares) before any node sees it.
            using var next = MasterSecret.Generate();
            using (var measurementSecret = KeyDerivation.DeriveMeasurementSecret(next))
            {
                var clusterId = Convert.ToHexStringLower(KeyDerivation.DeriveClusterId(measurementSecret.Span, Convert.FromHexString(state.ClusterValues.MeasurementSalt!)));
                if (request is not null)
                {
                    ShareFiles.CheckOutput(request);
                    SecretCommand.WriteSplitReport(stdout, ShareFiles.Write(next, clusterId, request), request);
                }
                else
                {
                    next.Save(nextPath);
                    await stdout.WriteLineAsync($"The new master secret was written to \"{nextPath}\"; it replaces {MasterSecret.DefaultFileName} when the rotation completes.");
                }
                WritePrivate(pendingPath, System.Text.Encoding.UTF8.GetBytes($"{{\"clusterID\":\"{clusterId}\"}}\n"));
            }
            var key = next.Key.ToArray();
            var salt = next.Salt.ToArray();
            try
            {
                var begun = await client.CallAsync(async api => await api.BeginRotationAsync(
                    new BeginRotationRequest { MasterKey = SecretFields.Wrap(key), MasterSalt = SecretFields.Wrap(salt) },
                    deadline: ClusterApiClient.Deadline(), cancellationToken: cancellationToken));
                await stdout.WriteLineAsync($"Rotation to generation {begun.PendingGeneration} begun: running control planes move at once, other nodes at their next rejoin.");
                await WriteStatusAsync(stdout, begun);
            }
            catch
            {
                // Not begun: the next secret must not be mistaken for a pending one.
                File.Delete(pendingPath);
                File.Delete(nextPath);
                throw;
            }
            finally
            {
                System.Security.Cryptography.CryptographicOperations.ZeroMemory(key);
                System.Security.Cryptography.CryptographicOperations.ZeroMemory(salt);
            }
            return 0;
        });
        return command;
    }

    private static async Task WriteStatusAsync(TextWriter stdout, RotationStatus status)
    {
        if (status.PendingGeneration == 0)
        {
            await stdout.WriteLineAsync($"Key generation {status.CurrentGeneration}; no rotation in progress.");
            return;
        }
        await stdout.WriteLineAsync(status.Behind.Count == 0
            ? $"Rotation {status.CurrentGeneration} -> {status.PendingGeneration}: every node is on generation {status.PendingGeneration}; run 'asterism secret rotate --complete'."
            : $"Rotation {status.CurrentGeneration} -> {status.PendingGeneration}: {status.Behind.Count} node(s) still on generation {status.CurrentGeneration}: {string.Join(", ", status.Behind)}");
    }

    /// <summary>The workspace follows the cluster: the next secret replaces the void one, the cluster ID is the new one.</summary>
    private static void FinishWorkspace(Workspace workspace, ClusterState state)
    {
        var pendingPath = Path.Combine(workspace.Directory, PendingFileName);
        var nextPath = Path.Combine(workspace.Directory, NextFileName);
        if (!File.Exists(pendingPath))
        {
            return;
        }
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(pendingPath))!;
        state.ClusterValues.ClusterId = json["clusterID"]!.GetValue<string>();
        state.Save(workspace.StatePath);
        if (File.Exists(nextPath))
        {
            File.Move(nextPath, workspace.MasterSecretPath, overwrite: true);
        }
        File.Delete(pendingPath);
    }

    private static void WritePrivate(string path, byte[] bytes)
    {
        using var f = new FileStream(path, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite });
        f.Write(bytes);
        f.Flush(flushToDisk: true);
    }
}
