using System.CommandLine;
using Asterism.Cli.Recovery;
using Asterism.Config;
using Asterism.Crypto;

namespace Asterism.Cli.Commands;

/// <summary>
/// <c>asterism secret split</c>: the master secret as k-of-n share files, each encrypted to its holder's age key;
/// <c>asterism secret verify</c>: do these shares rebuild this cluster's secret? Both act on the workspace only.
/// <c>asterism secret rotate</c>: a new master secret for every disk (<see cref="SecretRotation"/>).
/// </summary>
public static class SecretCommand
{
    public static Command Create(GlobalOptions global)
    {
        var command = new Command("secret", "Split the master secret into k-of-n shares for its holders, and check shares");
        command.Subcommands.Add(Split(global));
        command.Subcommands.Add(Verify(global));
        command.Subcommands.Add(SecretRotation.Create(global));
        return command;
    }

    private static Command Split(GlobalOptions global)
    {
        var options = new ShareOptions();
        var masterSecret = new Option<string?>("--master-secret") { Description = $"Master secret file (default: {MasterSecret.DefaultFileName} in the workspace; a relative path is relative to the current directory)" };
        var command = new Command("split", "Split the master secret into N share files, any K of which rebuild it; each is encrypted to its holder's age recipient")
        {
            masterSecret,
        };
        options.AddTo(command, required: true);
        command.SetAction((result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var workspace = new Workspace(global.WorkspaceOf(result));
            workspace.RequireCluster();
            var state = RequireInitialized(workspace);
            var request = options.RequestOf(result, workspace)!;
            ShareFiles.CheckOutput(request);
            var path = result.GetValue(masterSecret) is { } given ? Path.GetFullPath(given) : workspace.MasterSecretPath;
            using var master = Workspace.LoadMasterSecret(path);
            // The workspace's current generation: a rotation's new secret is split by 'secret rotate --shares'.
            var current = KeyGenerations.Load(workspace.Directory, state).Current;
            ShareFiles.RequireClusterSecret(master, current.KeyCheck, state.ClusterValues.MeasurementSalt!, current.Generation == 1
                ? $"master secret file \"{path}\" is not the secret of this cluster (it derives another cluster ID); nothing was written"
                : $"master secret file \"{path}\" is not this cluster's secret of generation {current.Generation} (it derives another key check); nothing was written");
            var files = ShareFiles.Write(master, state.ClusterValues.ClusterId!, current.Generation, request);
            WriteSplitReport(stdout, files, request);
            stdout.WriteLine($"The master secret file \"{path}\" still holds the whole secret: once the holders checked their shares ('asterism secret verify'), delete it.");
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>The lines naming each written share and its holder.</summary>
    public static void WriteSplitReport(TextWriter stdout, IReadOnlyList<string> files, ShareRequest request)
    {
        stdout.WriteLine($"Wrote {request.Count} shares, any {request.Threshold} of which rebuild the master secret:");
        for (var i = 0; i < files.Count; i++)
        {
            stdout.WriteLine(request.Recipients is null
                ? $"  {files[i]} (UNENCRYPTED)"
                : $"  {files[i]} for {request.Recipients[i]}");
        }
    }

    private static Command Verify(GlobalOptions global)
    {
        var share = ShareArgument();
        var identity = IdentityArgument();
        share.Required = true;
        var command = new Command("verify", "Check that the given shares are enough and rebuild this cluster's master secret (nothing is written or sent)")
        {
            share, identity,
        };
        command.SetAction((result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var stderr = result.InvocationConfiguration.Error;
            var workspace = new Workspace(global.WorkspaceOf(result));
            workspace.RequireCluster();
            var state = RequireInitialized(workspace);
            var shares = result.GetValue(share)!;
            var generations = KeyGenerations.Load(workspace.Directory, state);
            using var master = ShareFiles.Combine(shares, result.GetValue(identity) ?? [], generations, Console.In, stderr, out var generation);
            if (File.Exists(workspace.NodeRecordPath))
            {
                // The record is MAC'd with a key from the master secret: a second, independent check. While a rotation
                // is pending the record under the new secret's key is its next copy.
                NodeRecord.LoadAny(workspace.NodeRecordPath, Path.Combine(workspace.Directory, NodeRecord.NextFileName), [master]);
            }
            stdout.WriteLine(generation == 1 && generations.Current.Generation == 1
                ? $"OK: the shares rebuild the master secret of cluster {state.ClusterValues.ClusterId}."
                : $"OK: the shares rebuild the master secret of cluster {state.ClusterValues.ClusterId}, generation {generation}{(generation == generations.Current.Generation ? " (current)" : " (the pending rotation's)")}.");
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>--share FILE… ("-" pastes them one by one).</summary>
    public static Option<string[]> ShareArgument() => new("--share")
    {
        Description = "A share file (repeat for each); '-' pastes the shares one by one on standard input",
        Arity = ArgumentArity.OneOrMore,
    };

    /// <summary>--identity FILE…: the holders' age identity files.</summary>
    public static Option<string[]> IdentityArgument() => new("--identity", "-i")
    {
        Description = "An age identity file (AGE-SECRET-KEY-1…, as age-keygen writes it) that opens shares; repeat for several",
        Arity = ArgumentArity.OneOrMore,
    };

    /// <summary>The state of an initialized cluster, or a CliError saying init comes first.</summary>
    public static ClusterState RequireInitialized(Workspace workspace)
    {
        var state = workspace.LoadState();
        if (!state.IsInitialized)
        {
            throw new CliError($"the cluster in {workspace.Directory} is not initialized yet; 'asterism init --shares N --threshold K' splits its secret from the start");
        }
        return state;
    }
}
