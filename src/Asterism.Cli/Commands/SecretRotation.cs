using System.CommandLine;
using Asterism.Cli.Recovery;
using Asterism.Crypto;
using Asterism.Protocol;
using Asterism.Protocol.ClusterApi;
using Grpc.Core;

namespace Asterism.Cli.Commands;

/// <summary>
/// <c>asterism secret rotate [--shares N --threshold K -r …]</c> begins a master-secret rotation: a new secret is
/// written to the workspace first (<c>asterism-mastersecret.next.json</c>, 0600, or as new shares of the next
/// generation), then sent to the control plane over the mutual-TLS cluster API. <c>--status</c> shows the generation,
/// the pending target and the nodes still behind; <c>--complete</c> finishes once none is: the control plane audits the
/// old generation void, then the workspace moves to the new secret. The cluster ID never changes; the workspace's
/// generation and key check do (<see cref="KeyGenerations"/>). Every step is ordered so that a crash leaves a workspace
/// <c>recover</c> can use (src/Asterism.Cli/README.md, "secret rotate").
/// </summary>
public static class SecretRotation
{
    /// <summary>Where the next generation's secret waits until the rotation completes.</summary>
    public const string NextFileName = "asterism-mastersecret.next.json";

    /// <summary>The default directory of a rotation's new shares: <c>asterism-shares-genN</c> in the workspace.</summary>
    public static string SharesDirectoryName(int generation) => $"{ShareOptions.DefaultOutDirectory}-gen{generation}";

    public static Command Create(GlobalOptions global)
    {
        var options = new ShareOptions();
        var complete = new Option<bool>("--complete") { Description = "Finish the rotation once every node is on the new generation; the old secret and its shares become void" };
        var status = new Option<bool>("--status") { Description = "Show the generation, the pending rotation and the nodes still on the old generation" };
        var command = new Command("rotate", "Rotate the master secret: every node's disk gets a key from a new secret, then the old secret and its shares are void")
        {
            complete, status,
        };
        options.AddTo(command, required: false);
        command.Validators.Add(r =>
        {
            var sharesGiven = r.GetValue(options.Shares) is not null || r.GetValue(options.Threshold) is not null || r.GetValue(options.Out) is not null
                || (r.GetValue(options.Recipients) ?? []).Length > 0 || r.GetValue(options.NoEncrypt);
            if (r.GetValue(complete) && r.GetValue(status))
            {
                r.AddError("--status and --complete exclude each other");
            }
            else if ((r.GetValue(complete) || r.GetValue(status)) && sharesGiven)
            {
                r.AddError($"--shares, --threshold, --recipient, --out and --no-encrypt belong to beginning a rotation, not to {(r.GetValue(complete) ? "--complete" : "--status")}");
            }
        });
        command.SetAction(async (result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var workspace = new Workspace(global.WorkspaceOf(result));
            workspace.RequireCluster();
            var state = SecretCommand.RequireInitialized(workspace);
            var generations = KeyGenerations.Load(workspace.Directory, state);
            var request = result.GetValue(status) || result.GetValue(complete) ? null : options.RequestOf(result, workspace);
            if (request is not null && result.GetValue(options.Out) is null)
            {
                // The current generation's shares may be in the default directory: the new ones get their own.
                request = request with { OutDirectory = Path.Combine(workspace.Directory, SharesDirectoryName(generations.Current.Generation + 1)) };
            }
            using var credential = AdminCredential.Load(workspace.Directory);
            using var client = new ClusterApiClient(credential);
            var cluster = await client.CallAsync(async api => await api.GetRotationAsync(new GetRotationRequest(), deadline: ClusterApiClient.Deadline(), cancellationToken: cancellationToken));
            if (result.GetValue(status))
            {
                await WriteStatusAsync(stdout, cluster, generations);
                return 0;
            }
            if (result.GetValue(complete))
            {
                return await CompleteAsync(workspace, generations, cluster, client, stdout, cancellationToken);
            }
            return await BeginAsync(workspace, state.ClusterValues.ClusterId!, generations, cluster, request, client, stdout, cancellationToken);
        });
        return command;
    }

    private static async Task<int> BeginAsync(Workspace workspace, string clusterId, KeyGenerations generations, RotationStatus cluster, ShareRequest? request,
        ClusterApiClient client, TextWriter stdout, CancellationToken cancellationToken)
    {
        var nextPath = Path.Combine(workspace.Directory, NextFileName);
        if (generations.StalePending)
        {
            throw new CliError($"the rotation to generation {generations.Current.Generation} completed but this workspace did not finish it ({generations.PendingPath} is left); run 'asterism secret rotate --complete' first");
        }
        if (generations.Pending is { } pending)
        {
            if (cluster.PendingGeneration == pending.Generation)
            {
                throw new CliError($"a rotation to generation {pending.Generation} is in progress (begun from this workspace); see 'asterism secret rotate --status' and finish it with '--complete' before beginning another");
            }
            if (cluster.CurrentGeneration >= pending.Generation)
            {
                throw new CliError($"the rotation to generation {pending.Generation} completed on the cluster but not in this workspace; run 'asterism secret rotate --complete' to finish it here");
            }
            // The begin never reached the cluster (the CLI stopped or the call failed without an answer): send the same
            // secret again; with shares only their holders have it.
            if (generations.PendingShares is null && File.Exists(nextPath))
            {
                return await ResendAsync(generations, pending, nextPath, client, stdout, cancellationToken);
            }
            throw new CliError($"a rotation to generation {pending.Generation} was begun from this workspace but never reached the cluster, and its new secret is only in the shares in {generations.PendingShares ?? "(none)"}; remove {generations.PendingPath}, those shares, {NodeRecord.NextFileName} and admin/registry-mac.next.key, then run 'asterism secret rotate' again");
        }
        if (cluster.PendingGeneration != 0)
        {
            throw new CliError($"a rotation to generation {cluster.PendingGeneration} is in progress on the cluster, begun from another workspace; it must be completed there (that workspace holds its new secret)");
        }
        if (cluster.CurrentGeneration != generations.Current.Generation)
        {
            throw new CliError($"the cluster's key generation is {cluster.CurrentGeneration}, this workspace's secret is of generation {generations.Current.Generation}: it is not this workspace's secret that opens the disks; rotate from the workspace that holds it");
        }
        if (File.Exists(nextPath))
        {
            throw new CliError($"{nextPath} exists but no rotation is recorded ({KeyGenerations.PendingFileName} is missing); move it away, then run 'asterism secret rotate' again");
        }
        if (request is not null)
        {
            ShareFiles.CheckOutput(request);
        }
        // The node record under the new key is made from the registry (mutual TLS, the cluster CA): with shares the
        // workspace has no secret to verify its current record with, and the registry is the authority anyway.
        var nodes = await client.CallAsync(async api => await api.ListNodesAsync(new ListNodesRequest(), deadline: ClusterApiClient.Deadline(), cancellationToken: cancellationToken));
        var target = generations.Current.Generation + 1;
        using var next = MasterSecret.Generate();
        var written = WriteNext(workspace, clusterId, generations, request, [.. nodes.Nodes.Select(n => new RecordedNode(n.Name, RecordRole(n.Role), n.DiskUuid))], next, stdout);
        return await SendAsync(next, target, written, client, stdout, cancellationToken);
    }

    /// <summary>
    /// The node record's role name (the certified identity's, <c>control-plane</c>/<c>worker</c>) of a registry role as the
    /// cluster API lists it (<c>ControlPlane</c>/<c>Worker</c>); anything else is refused rather than recorded.
    /// </summary>
    internal static string RecordRole(string registryRole) => registryRole switch
    {
        "ControlPlane" or Asterism.Attestation.Identities.NodeIdentity.ControlPlaneRole => Asterism.Attestation.Identities.NodeIdentity.ControlPlaneRole,
        "Worker" or Asterism.Attestation.Identities.NodeIdentity.WorkerRole => Asterism.Attestation.Identities.NodeIdentity.WorkerRole,
        _ => throw new CliError($"the cluster API listed a node with the unknown role '{registryRole}'; nothing was written"),
    };

    /// <summary>
    /// The workspace side of beginning: the new secret (file 0600, or shares of generation G+1), the node record under
    /// its key, the registry copy's next MAC key, and last the pending file naming the target generation and the new
    /// key check. A failure removes what was written. Returns the paths written (removed again on a definite refusal).
    /// </summary>
    internal static List<string> WriteNext(Workspace workspace, string clusterId, KeyGenerations generations, ShareRequest? request, IReadOnlyList<RecordedNode> nodes, MasterSecret next, TextWriter stdout)
    {
        var target = generations.Current.Generation + 1;
        var nextPath = Path.Combine(workspace.Directory, NextFileName);
        var keyCheck = generations.KeyCheckOf(next);
        var written = new List<string>();
        var store = new RegistryCopyStore(workspace.Directory);
        try
        {
            // The new secret reaches the operator's disk (as a file or as shares) before any node sees it.
            if (request is not null)
            {
                var files = ShareFiles.Write(next, clusterId, target, request);
                written.AddRange(files);
                SecretCommand.WriteSplitReport(stdout, files, request);
            }
            else
            {
                Workspace.SaveMasterSecret(next, nextPath);
                written.Add(nextPath);
                stdout.WriteLine($"The new master secret (generation {target}) was written to \"{nextPath}\"; it replaces {MasterSecret.DefaultFileName} when the rotation completes.");
            }
            var recordNext = Path.Combine(workspace.Directory, NodeRecord.NextFileName);
            new NodeRecord(nodes).Save(recordNext, next);
            written.Add(recordNext);
            store.StoreNextKey(next);
            written.Add(store.NextKeyPath);
            KeyGenerations.WritePending(workspace.Directory, new SecretGeneration(target, keyCheck), request?.OutDirectory);
            written.Add(generations.PendingPath);
            return written;
        }
        catch
        {
            Remove(written);
            throw;
        }
    }

    /// <summary>Sends the new secret; removes what was written only when the cluster definitely refused it.</summary>
    private static async Task<int> SendAsync(MasterSecret next, int target, List<string> written, ClusterApiClient client, TextWriter stdout, CancellationToken cancellationToken)
    {
        var key = next.Key.ToArray();
        var salt = next.Salt.ToArray();
        try
        {
            var begun = await client.Api.BeginRotationAsync(
                new BeginRotationRequest { MasterKey = SecretFields.Wrap(key), MasterSalt = SecretFields.Wrap(salt) },
                deadline: ClusterApiClient.Deadline(), cancellationToken: cancellationToken);
            if (begun.PendingGeneration != target)
            {
                throw new CliError($"the cluster began a rotation to generation {begun.PendingGeneration}, not {target}: this workspace's generation is out of step with the cluster; see 'asterism secret rotate --status'");
            }
            await stdout.WriteLineAsync($"Rotation to generation {begun.PendingGeneration} begun: running nodes move their disk keys on their next check, nodes that are down when they come back.");
            await WriteStatusAsync(stdout, begun, null);
            return 0;
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.FailedPrecondition or StatusCode.InvalidArgument or StatusCode.PermissionDenied
            or StatusCode.Unauthenticated or StatusCode.Aborted or StatusCode.NotFound or StatusCode.DataLoss)
        {
            // A definite answer: the cluster did not take the secret, so it must not be mistaken for a pending one.
            Remove(written);
            throw new CliError($"the cluster refused to begin the rotation: {e.Status.Detail}; nothing changed (the new secret was deleted)");
        }
        catch (RpcException e)
        {
            // No definite answer: the cluster may hold the new secret, so the workspace keeps it.
            throw new CliError($"{client.ToCliError(e).Message}; the cluster may or may not have begun the rotation: the new secret is kept; run 'asterism secret rotate --status', and 'asterism secret rotate' again if no rotation is pending");
        }
        finally
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(key);
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(salt);
        }
    }

    private static async Task<int> ResendAsync(KeyGenerations generations, SecretGeneration pending, string nextPath, ClusterApiClient client, TextWriter stdout, CancellationToken cancellationToken)
    {
        using var next = Workspace.LoadMasterSecret(nextPath);
        if (generations.GenerationOf(next) != pending.Generation)
        {
            throw new CliError($"{nextPath} is not the secret {generations.PendingPath} records (its key check differs); nothing was sent");
        }
        await stdout.WriteLineAsync($"The rotation to generation {pending.Generation} begun from this workspace never reached the cluster; sending its secret ({nextPath}) again.");
        // Nothing is removed on a refusal here: these files were written by an earlier run, which the operator may inspect.
        return await SendAsync(next, pending.Generation, [], client, stdout, cancellationToken);
    }

    /// <summary>
    /// <c>--complete</c>: refused while nodes are behind (named) or when the workspace lacks the new secret; then the
    /// cluster completes, then the workspace moves (<see cref="FinishWorkspace"/>). Run again after a crash, it finds the
    /// cluster completed and finishes the workspace.
    /// </summary>
    private static async Task<int> CompleteAsync(Workspace workspace, KeyGenerations generations, RotationStatus cluster, ClusterApiClient client, TextWriter stdout, CancellationToken cancellationToken)
    {
        if (generations.StalePending)
        {
            FinishWorkspace(workspace, generations, new SecretGeneration(generations.Current.Generation, generations.Current.KeyCheck));
            await stdout.WriteLineAsync($"The rotation to generation {generations.Current.Generation} was already complete; the workspace is finished too.");
            return 0;
        }
        if (generations.Pending is not { } pending)
        {
            throw new CliError(cluster.PendingGeneration == 0
                ? $"no rotation is in progress (key generation {cluster.CurrentGeneration})"
                : $"the rotation to generation {cluster.PendingGeneration} was not begun from this workspace; complete it from the workspace that holds its new secret (completing here would leave this workspace with a void one)");
        }
        RequireNewSecretAtHand(workspace, generations, pending);
        if (cluster.PendingGeneration == pending.Generation)
        {
            if (cluster.Behind.Count > 0)
            {
                throw new CliError($"cannot complete: {cluster.Behind.Count} node(s) still on generation {cluster.CurrentGeneration}: {string.Join(", ", cluster.Behind)}; a node that is down catches up once it runs (see 'asterism secret rotate --status')");
            }
            var done = await client.CallAsync(async api => await api.CompleteRotationAsync(new CompleteRotationRequest(), deadline: ClusterApiClient.Deadline(), cancellationToken: cancellationToken));
            await stdout.WriteLineAsync($"Rotation complete: generation {done.CurrentGeneration} is current; generation {done.VoidGeneration} is void (its master secret and shares open no disk; the audit log says so).");
        }
        else if (cluster.PendingGeneration == 0 && cluster.CurrentGeneration == pending.Generation)
        {
            await stdout.WriteLineAsync($"The cluster completed the rotation to generation {pending.Generation} earlier; finishing the workspace.");
        }
        else
        {
            throw new CliError($"the cluster has no rotation to generation {pending.Generation} (its generation is {cluster.CurrentGeneration}{(cluster.PendingGeneration == 0 ? "" : $", pending {cluster.PendingGeneration}")}); run 'asterism secret rotate' to send the new secret again");
        }
        FinishWorkspace(workspace, generations, pending);
        await stdout.WriteLineAsync(generations.PendingShares is { } shares
            ? $"The workspace is on generation {pending.Generation}: the shares in {shares} are the ones to keep; every earlier share is void."
            : $"The workspace is on generation {pending.Generation}: {workspace.MasterSecretPath} holds its secret; the earlier secret is void.");
        return 0;
    }

    /// <summary>Completing without the new secret in the workspace would leave the operator no secret that opens a disk.</summary>
    private static void RequireNewSecretAtHand(Workspace workspace, KeyGenerations generations, SecretGeneration pending)
    {
        if (generations.PendingShares is { } shares)
        {
            if (!Directory.Exists(shares) || !Directory.EnumerateFiles(shares, ShareFiles.FilePrefix + "*").Any())
            {
                throw new CliError($"the new generation's shares are not in {shares} any more; check with the holders ('asterism secret verify --share …' names their generation) before completing: completing voids every other secret");
            }
            return;
        }
        foreach (var path in new[] { Path.Combine(workspace.Directory, NextFileName), workspace.MasterSecretPath })
        {
            if (File.Exists(path))
            {
                using var secret = Workspace.LoadMasterSecret(path);
                if (generations.GenerationOf(secret) == pending.Generation)
                {
                    return;
                }
            }
        }
        throw new CliError($"the secret of generation {pending.Generation} is not in this workspace ({NextFileName} is missing or not that secret); completing would leave no secret that opens the disks; nothing was done");
    }

    /// <summary>
    /// Moves the workspace to <paramref name="target"/> after the cluster completed. Each step is idempotent, and the
    /// order keeps every intermediate workspace usable by <c>recover</c>: while the pending file stays, recover accepts
    /// the current and the new secret and reads the node record and registry copy under either key.
    /// 1. the node record under the new key replaces the old; 2. the registry copy and its head are re-MAC'd under the new
    /// key; 3. the new secret file replaces the old (with shares: a leftover whole-secret file of the void generation is
    /// deleted); 4. the generation file names the new generation and key check; 5. the pending file goes.
    /// </summary>
    /// <param name="afterStep">Test seam: called after each step (1..5); a test throws there to simulate a crash.</param>
    internal static void FinishWorkspace(Workspace workspace, KeyGenerations generations, SecretGeneration target, Action<int>? afterStep = null)
    {
        var recordNext = Path.Combine(workspace.Directory, NodeRecord.NextFileName);
        if (File.Exists(recordNext))
        {
            File.Move(recordNext, workspace.NodeRecordPath, overwrite: true);
        }
        afterStep?.Invoke(1);
        new RegistryCopyStore(workspace.Directory).MoveToNextKey();
        afterStep?.Invoke(2);
        var nextPath = Path.Combine(workspace.Directory, NextFileName);
        if (File.Exists(nextPath))
        {
            File.Move(nextPath, workspace.MasterSecretPath, overwrite: true);
        }
        else if (generations.PendingShares is not null && File.Exists(workspace.MasterSecretPath))
        {
            using var old = Workspace.LoadMasterSecret(workspace.MasterSecretPath);
            if (generations.GenerationOf(old) is { } g && g != target.Generation)
            {
                // The void generation's whole secret: it opens no disk of the cluster any more, only old copies of them.
                File.Delete(workspace.MasterSecretPath);
            }
        }
        afterStep?.Invoke(3);
        if (generations.Current.Generation != target.Generation)
        {
            KeyGenerations.WriteCurrent(workspace.Directory, target);
        }
        afterStep?.Invoke(4);
        File.Delete(generations.PendingPath);
        afterStep?.Invoke(5);
    }

    private static async Task WriteStatusAsync(TextWriter stdout, RotationStatus status, KeyGenerations? generations)
    {
        if (status.PendingGeneration == 0)
        {
            await stdout.WriteLineAsync($"Key generation {status.CurrentGeneration}; no rotation in progress.");
        }
        else
        {
            await stdout.WriteLineAsync(status.Behind.Count == 0
                ? $"Rotation {status.CurrentGeneration} -> {status.PendingGeneration}: every node is on generation {status.PendingGeneration}; run 'asterism secret rotate --complete'."
                : $"Rotation {status.CurrentGeneration} -> {status.PendingGeneration}: {status.Behind.Count} node(s) still on generation {status.CurrentGeneration}: {string.Join(", ", status.Behind)}");
        }
        if (generations is null)
        {
            return;
        }
        if (generations.StalePending || (generations.Pending is { } p && status.PendingGeneration == 0 && status.CurrentGeneration >= p.Generation))
        {
            await stdout.WriteLineAsync($"Workspace: not finished; run 'asterism secret rotate --complete'.");
        }
        else if (generations.Pending is { } q && status.PendingGeneration != q.Generation)
        {
            await stdout.WriteLineAsync($"Workspace: a rotation to generation {q.Generation} was begun here but the cluster has none pending; run 'asterism secret rotate' to send it again.");
        }
        else if (generations.Current.Generation != status.CurrentGeneration && generations.Pending is null)
        {
            await stdout.WriteLineAsync($"Workspace: its secret is of generation {generations.Current.Generation}, the cluster's is {status.CurrentGeneration}.");
        }
    }

    private static void Remove(IEnumerable<string> paths)
    {
        foreach (var path in paths)
        {
            File.Delete(path);
        }
    }
}
