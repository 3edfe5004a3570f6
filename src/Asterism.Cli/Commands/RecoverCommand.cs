using System.CommandLine;
using Asterism.Cli.Recovery;
using Asterism.Cloud;
using Asterism.Config;
using Asterism.Crypto;
using Asterism.Protocol;
using Microsoft.Extensions.Logging;

namespace Asterism.Cli.Commands;

/// <summary>
/// <c>asterism recover</c>: pushes every waiting control-plane node its own disk key and the measurement secret,
/// after validating its attestation. Without --endpoint all waiting nodes are found through the provider and
/// recovered in parallel; with --endpoint it loops through one address (the load balancer) as Constellation does.
/// </summary>
public static class RecoverCommand
{
    public const string PushedLine = "Pushed recovery key.";
    public const string NothingLine = "No control-plane nodes in need of recovery found. Exiting.";

    /// <summary>Upper bound of pushes to one endpoint in a row before giving up on it.</summary>
    public const int MaxAttempts = 12;

    public static string RecoveredLine(int n) => $"Recovered {n} control-plane nodes.";

    public static Command Create(GlobalOptions global)
    {
        var masterSecret = new Option<string?>("--master-secret") { Description = $"Master secret file (default: {MasterSecret.DefaultFileName} in the workspace; a relative path is relative to the current directory)" };
        var endpoint = new Option<string?>("--endpoint", "-e") { Description = "Recover through this address (HOST[:PORT], e.g. the load balancer) one node at a time, as Constellation does" };
        var interval = new Option<string>("--retry-interval") { Description = "Wait before retrying an unavailable endpoint (--endpoint mode)", DefaultValueFactory = _ => "5s" };
        var timeout = new Option<string>("--timeout") { Description = "Per-node time limit of one push", DefaultValueFactory = _ => "30s" };
        var bootWait = new Option<string>("--boot-wait") { Description = "How long to wait for control planes that are still booting (parallel mode)", DefaultValueFactory = _ => "60s" };
        var nextSecret = new Option<string?>("--next-master-secret") { Description = $"While a rotation is pending: the new generation's secret file, offered first (default: {SecretRotation.NextFileName} in the workspace when it exists)" };
        var share = SecretCommand.ShareArgument();
        var identity = SecretCommand.IdentityArgument();
        var ignoreCopy = new Option<bool>("--ignore-registry-copy") { Description = "Do not check revocations against the workspace's registry copy (only when the copy is damaged and the control plane is down): a revoked control plane that waits gets its key too" };
        var dryRun = new Option<bool>("--dry-run") { Description = "Rehearse: attest every waiting control plane, check the master secret and print what a real run would push to which node; sends no key (exit 0 only if a real run would succeed)" };
        // Usage is checked while parsing, so a bad value is reported (exit 2) before any file is read.
        endpoint.Validators.Add(r => Validate(r, value => AddPortIfMissing(value)));
        interval.Validators.Add(r => Validate(r, value => Parse(value, "--retry-interval")));
        timeout.Validators.Add(r => Validate(r, value => Parse(value, "--timeout")));
        bootWait.Validators.Add(r => Validate(r, value => Parse(value, "--boot-wait")));
        var command = new Command("recover", "Recover a cluster whose control plane went down: push each waiting control-plane node its disk key")
        {
            masterSecret, nextSecret, endpoint, interval, timeout, bootWait, share, identity, dryRun, ignoreCopy,
        };
        command.Validators.Add(r =>
        {
            if (r.GetValue(share) is { Length: > 0 } && r.GetValue(masterSecret) is not null)
            {
                r.AddError("--share and --master-secret exclude each other: give the shares or the whole secret");
            }
            if (r.GetValue(dryRun) && r.GetValue(endpoint) is not null)
            {
                r.AddError("--dry-run checks every control plane at its own address; it cannot be combined with --endpoint");
            }
        });
        command.SetAction(async (result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var stderr = result.InvocationConfiguration.Error;
            var workspace = new Workspace(global.WorkspaceOf(result));
            workspace.RequireCluster();
            // One rule for every path on the command line: relative to the current directory, as with `disk`.
            using var secrets = LoadSecrets(workspace, result.GetValue(masterSecret), result.GetValue(share), result.GetValue(identity) ?? [], result.GetValue(nextSecret), stderr);
            var master = secrets.Newest.Master;
            var config = workspace.LoadConfig();
            var policy = Workspace.PolicyOf(config).ForKeyRelease();
            foreach (var warning in Workspace.PolicyWarnings(policy))
            {
                await stderr.WriteLineAsync("Warning: " + warning);
            }
            using var loggers = CliLogging.Create(stderr, result.GetValue(global.Debug));
            if (result.GetValue(dryRun))
            {
                var options = new ParallelRecoveryOptions { BootWait = Parse(result.GetValue(bootWait)!, "--boot-wait"), PushTimeout = Parse(result.GetValue(timeout)!, "--timeout") };
                return await RecoveryRehearsal.RunAsync(workspace, secrets, policy.CreateValidator(loggers), loggers, options, stdout, stderr, Progress.For(stderr), cancellationToken, result.GetValue(ignoreCopy));
            }
            var masters = secrets.InOrder.Select(s => s.Master).ToList();
            var record = NodeRecord.LoadAny(workspace.NodeRecordPath, Path.Combine(workspace.Directory, NodeRecord.NextFileName), masters);
            // Before any node is contacted: a copy that fails its check stops the run here.
            var denyList = LoadDenyList(workspace, masters, result.GetValue(ignoreCopy), stderr);
            var pushTimeout = Parse(result.GetValue(timeout)!, "--timeout");
            var pusher = new RecoveryPusher(secrets, policy.CreateValidator(loggers), record, loggers, pushTimeout, denyList);
            var progress = Progress.For(stderr);
            var target = result.GetValue(endpoint);
            return target is null
                ? await RecoverParallelAsync(workspace, pusher, Parse(result.GetValue(bootWait)!, "--boot-wait"), pushTimeout, stdout, stderr, progress, cancellationToken)
                : await RecoverThroughEndpointAsync(AddPortIfMissing(target), pusher, Parse(result.GetValue(interval)!, "--retry-interval"), stdout, stderr, progress, cancellationToken);
        });
        return command;
    }

    /// <summary>The stderr line of <c>--ignore-registry-copy</c>.</summary>
    public const string IgnoringCopyLine = "Warning: --ignore-registry-copy: revocations are NOT checked; every waiting control plane is pushed its key, a revoked one too";

    /// <summary>
    /// The revoked nodes recover must refuse, from the workspace's registry copy verified with one of
    /// <paramref name="masters"/> (the secrets of the generations at hand, <see cref="RegistryCopyStore.LoadForRecovery"/>).
    /// A copy that is missing behind its head, tampered with, of another cluster or older than the last one written is a
    /// <see cref="CliError"/> naming the file, before any node is contacted; a workspace that never had one is a warning
    /// and an empty list.
    /// </summary>
    public static IRecoveryDenyList LoadDenyList(Workspace workspace, IReadOnlyList<MasterSecret> masters, bool ignore, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        ArgumentNullException.ThrowIfNull(stderr);
        if (ignore)
        {
            stderr.WriteLine(IgnoringCopyLine);
            return NoDenyList.Instance;
        }
        var copy = new RegistryCopyStore(workspace.Directory).LoadForRecovery(masters, workspace.LoadState().ClusterValues.ClusterId, out var warning);
        if (warning is not null)
        {
            stderr.WriteLine("Warning: " + warning);
        }
        return (IRecoveryDenyList?)copy ?? NoDenyList.Instance;
    }

    /// <summary>
    /// The secrets this run may offer, each checked against its generation's key check before any node is contacted
    /// (<see cref="KeyGenerations"/>): the one given (<c>--share</c>, <c>--master-secret</c>, or the workspace's file)
    /// and, while a rotation is pending in the workspace, the other generation's secret when it is at hand
    /// (<c>--next-master-secret</c>, <see cref="SecretRotation.NextFileName"/>, or the workspace's file when the given
    /// secret is the new one). A secret of a void or unknown generation is one line, nothing sent. Shares are rebuilt in
    /// memory only; everything is zeroed when the caller disposes the result.
    /// </summary>
    public static RecoverySecrets LoadSecrets(Workspace workspace, string? masterSecretArgument, string[]? shares, string[] identities, string? nextArgument, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        ArgumentNullException.ThrowIfNull(stderr);
        var givenPath = masterSecretArgument is { } given ? Path.GetFullPath(given) : workspace.MasterSecretPath;
        MasterSecret primary;
        KeyGenerations generations;
        int generation;
        if (shares is { Length: > 0 })
        {
            generations = KeyGenerations.Load(workspace.Directory, SecretCommand.RequireInitialized(workspace));
            primary = ShareFiles.Combine(shares, identities, generations, Console.In, stderr, out generation);
        }
        else
        {
            primary = Workspace.LoadMasterSecret(givenPath);
            var state = workspace.LoadState();
            if (!state.IsInitialized)
            {
                // Not initialized from here: the node record check that follows says so.
                return RecoverySecrets.Single(primary);
            }
            generations = KeyGenerations.Load(workspace.Directory, state);
            if (generations.GenerationOf(primary) is { } known)
            {
                generation = known;
            }
            else if (generations.Current.Generation == 1 && generations.Pending is null)
            {
                // A cluster that never rotated: a foreign secret is refused by the node record's MAC, as always.
                return RecoverySecrets.Single(primary);
            }
            else
            {
                primary.Dispose();
                throw new CliError($"master secret file \"{givenPath}\" is not this cluster's secret of generation {generations.Current.Generation}{(generations.Pending is { } p ? $" nor of the pending generation {p.Generation}" : "")}: it is another cluster's, or of a void generation (it opens no disk); nothing was sent");
            }
        }
        var secrets = new List<GenerationSecret> { new(primary, generation) };
        try
        {
            if (generations.Pending is { } pending)
            {
                var others = new List<string>();
                var nextPath = nextArgument is null ? null : Path.GetFullPath(nextArgument);
                if (nextPath is not null)
                {
                    others.Add(nextPath);
                }
                else if (File.Exists(Path.Combine(workspace.Directory, SecretRotation.NextFileName)))
                {
                    others.Add(Path.Combine(workspace.Directory, SecretRotation.NextFileName));
                }
                if ((shares is { Length: > 0 } || givenPath != workspace.MasterSecretPath) && File.Exists(workspace.MasterSecretPath))
                {
                    others.Add(workspace.MasterSecretPath);
                }
                foreach (var path in others.Where(p => p != givenPath))
                {
                    var other = Workspace.LoadMasterSecret(path);
                    var otherGeneration = generations.GenerationOf(other);
                    if (otherGeneration is null || secrets.Any(s => s.Generation == otherGeneration))
                    {
                        other.Dispose();
                        if (otherGeneration is null && path == nextPath)
                        {
                            throw new CliError($"--next-master-secret \"{path}\" is not this cluster's secret of generation {pending.Generation} nor {generations.Current.Generation}; nothing was sent");
                        }
                        continue;
                    }
                    secrets.Add(new GenerationSecret(other, otherGeneration.Value));
                }
                if (secrets.Count == 1)
                {
                    var missing = generation == pending.Generation ? generations.Current.Generation : pending.Generation;
                    stderr.WriteLine($"Warning: a rotation to generation {pending.Generation} is pending and only the secret of generation {generation} is at hand: a node on generation {missing} will refuse it and keep waiting ({(missing == pending.Generation ? "--next-master-secret FILE" : "--master-secret FILE")} gives the other)");
                }
            }
            return new RecoverySecrets(secrets);
        }
        catch
        {
            foreach (var secret in secrets)
            {
                secret.Master.Dispose();
            }
            throw;
        }
    }

    private static void Validate(System.CommandLine.Parsing.OptionResult option, Action<string> check)
    {
        try
        {
            check(option.GetValueOrDefault<string?>() ?? "");
        }
        catch (CliError ex)
        {
            option.AddError(ex.Message);
        }
    }

    private static TimeSpan Parse(string text, string option)
    {
        try
        {
            return Durations.Parse(text, option);
        }
        catch (ArgumentException ex)
        {
            throw new CliError(ex.Message, 2);
        }
    }

    /// <summary>HOST[:PORT] with the recovery port added when missing; HOST must be a loopback IP address.</summary>
    public static string AddPortIfMissing(string endpoint)
    {
        var host = endpoint.StartsWith('[') ? endpoint[1..Math.Max(1, endpoint.IndexOf(']', StringComparison.Ordinal))]
            : endpoint.Split(':')[0];
        if (!System.Net.IPAddress.TryParse(host, out var address) || !System.Net.IPAddress.IsLoopback(address))
        {
            throw new CliError($"--endpoint {endpoint}: the host must be a loopback IP address (127.0.0.0/8 or [::1])", 2);
        }
        if (endpoint.StartsWith('[') ? !endpoint.Contains("]:", StringComparison.Ordinal) : !endpoint.Contains(':', StringComparison.Ordinal))
        {
            return $"{endpoint}:{Ports.Recovery}";
        }
        return endpoint;
    }

    /// <summary>
    /// Every control plane at once (<see cref="ParallelRecovery"/>): stopped ones are named, booting ones waited for up
    /// to <paramref name="bootWait"/>, waiting ones pushed; each node's line is written as soon as it is done.
    /// </summary>
    public static async Task<int> RecoverParallelAsync(Workspace workspace, RecoveryPusher pusher, TimeSpan bootWait, TimeSpan pushTimeout, TextWriter stdout, TextWriter stderr, Progress progress, CancellationToken cancellationToken)
    {
        using var cloud = workspace.ConnectProvider();
        var instances = await cloud.ListAsync(cancellationToken);
        var recovery = new ParallelRecovery(
            (instance, ct) => pusher.PushAsync(RecoveryPusher.RecoveryEndpoint(instance.Address), instance.Name, ct),
            async (address, ct) => (await NodeProbe.BootStatusAsync(address, ct))?.Phase,
            new ParallelRecoveryOptions { BootWait = bootWait, PushTimeout = pushTimeout });
        return await recovery.RunAsync(instances, stdout, stderr, progress, cancellationToken);
    }

    /// <summary>
    /// Constellation's loop: push through one address until it answers "unavailable"; one unavailable answer is
    /// retried after the interval (a recovered node may still be behind the load balancer until its health check
    /// drops it), and "load balancer not ready" handshake failures are always retried.
    /// </summary>
    public static async Task<int> RecoverThroughEndpointAsync(string endpoint, RecoveryPusher pusher, TimeSpan interval, TextWriter stdout, TextWriter stderr, Progress progress, CancellationToken cancellationToken)
    {
        var results = new List<(string, PushResult)>();
        while (true)
        {
            var retriedOnce = false;
            var attempts = 0;
            PushResult pushed;
            while (true)
            {
                attempts++;
                progress.Report($"Pushing recovery key through {endpoint}...");
                pushed = await pusher.PushAsync(endpoint, cancellationToken);
                // Bounded: even "not ready" answers stop after MaxAttempts, so the loop always ends.
                var retriable = pushed.Outcome == PushOutcome.Unavailable && (pushed.LoadBalancerNotReady || !retriedOnce) && attempts < MaxAttempts;
                if (!retriable)
                {
                    break;
                }
                retriedOnce = true;
                progress.Report($"  {endpoint} unavailable ({pushed.Detail}); retrying in {interval.TotalSeconds:0.#} s");
                await Task.Delay(interval, cancellationToken);
            }
            if (pushed.Outcome != PushOutcome.Recovered)
            {
                if (pushed.Outcome != PushOutcome.Unavailable)
                {
                    results.Add((pushed.NodeName ?? endpoint, pushed));
                }
                break;
            }
            await stdout.WriteLineAsync(PushedLine);
            progress.Report($"  {pushed.NodeName}: key accepted ({pushed.Variant} attestation verified)");
            results.Add((pushed.NodeName ?? endpoint, pushed));
        }
        return Summarize(results, stdout, stderr);
    }

    /// <summary>The one stderr line naming a node that was not recovered, and why.</summary>
    public static string FailureLine(string name, PushResult result) =>
        result.FailureLine(name, keyRejected: "key refused by the node", refused: "refused, no key sent", otherwise: "recovery failed");

    private static int Summarize(IReadOnlyList<(string Name, PushResult Result)> results, TextWriter stdout, TextWriter stderr)
    {
        var recovered = results.Count(r => r.Result.Outcome == PushOutcome.Recovered);
        var failures = results.Where(r => r.Result.Outcome is not (PushOutcome.Recovered or PushOutcome.Unavailable)).ToList();
        foreach (var (name, result) in failures)
        {
            stderr.WriteLine(FailureLine(name, result));
        }
        if (recovered > 0)
        {
            stdout.WriteLine(RecoveredLine(recovered));
        }
        else if (failures.Count == 0)
        {
            stdout.WriteLine(NothingLine);
        }
        return failures.Count == 0 ? 0 : 1;
    }
}

/// <summary>Loggers for CLI internals (aTLS refusals etc.): warnings to stderr, everything with --debug.</summary>
public static class CliLogging
{
    public static ILoggerFactory Create(TextWriter stderr, bool debug) =>
        debug ? Asterism.Logging.JsonLogging.CreateFactory(stderr, debug: true) : Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance;
}
