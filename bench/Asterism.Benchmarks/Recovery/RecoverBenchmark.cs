using System.Diagnostics;
using System.Globalization;
using Asterism.Cli;
using Asterism.Cli.Commands;
using Asterism.Cloud;
using Asterism.Config;
using Asterism.Protocol;

namespace Asterism.Benchmarks.Recovery;

/// <summary>
/// `asterism recover` on N waiting control-plane nodes (real local cluster, 0 workers): parallel mode against
/// Constellation's load-balancer loop (--endpoint LB), both measured on the same cluster in the same run. Each
/// measurement: crash every node, start every node, wait until every node waits for a key (and the load balancer's
/// health checks have seen the recovery ports), then time the recover command, then wait until every node booted and,
/// separately, until etcd answers a linearizable read (a quorum of members up again; issue #15 item 8).
/// Arguments: [sizes=3,10,20] [lb retry intervals=5s] e.g. `macro recover 3,10,20 5s,1s`; a size "C+W" adds W workers,
/// e.g. `macro recover 3+10` (the workers wait, then rejoin on their own through the recovered control planes).
/// </summary>
public sealed class RecoverBenchmark : IMacroBenchmark
{
    private static readonly TimeSpan PhaseTimeout = TimeSpan.FromMinutes(3);

    public string Name => "recover";

    public string Description => "asterism recover: parallel vs load-balancer loop for N = 3, 10, 20 waiting control planes";

    public async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        var sizes = (args.Length > 0 ? args[0] : "3,10,20").Split(',').Select(s => s.Split('+') is [var c, var w]
            ? (int.Parse(c, CultureInfo.InvariantCulture), int.Parse(w, CultureInfo.InvariantCulture))
            : (int.Parse(s, CultureInfo.InvariantCulture), 0)).ToList();
        var intervals = (args.Length > 1 ? args[1] : "5s").Split(',').ToList();
        Console.WriteLine($"# recover: wall time of `asterism recover` (in-process CLI) on N waiting control-plane nodes, {Environment.ProcessorCount} cores");
        foreach (var (n, workers) in sizes)
        {
            var line = await MeasureAsync(n, workers, intervals, cancellationToken);
            Console.WriteLine(line + $"  [load average {LoadAverage()}]");
        }
        return 0;
    }

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";

    private static async Task<string> MeasureAsync(int n, int workers, IReadOnlyList<string> intervals, CancellationToken cancellationToken)
    {
        var workspace = Directory.CreateTempSubdirectory("asterism-bench-recover-").FullName;
        try
        {
            Progress($"N={n}+{workers}: create + init");
            await CliAsync(workspace, cancellationToken, "create", "--control-planes", n.ToString(CultureInfo.InvariantCulture), "--workers", workers.ToString(CultureInfo.InvariantCulture));
            await CliAsync(workspace, cancellationToken, "init", "--timeout", "300s");
            var loadBalancer = ClusterState.Load(Path.Combine(workspace, ClusterState.FileName)).Infrastructure.ClusterEndpoint;
            using var cloud = LocalCloudClient.Connect(workspace);
            var instances = await cloud.ListAsync(cancellationToken);
            var nodes = instances.Select(i => (i.Name, i.Address)).ToList();
            var controlPlanes = instances.Where(i => i.IsControlPlane).Select(i => (i.Name, i.Address)).ToList();
            if (workers > 0)
            {
                // Init returns once control-plane-0 booted; the others must have joined before the first outage.
                if (!await NodeProbe.WaitForPhaseAsync(nodes, BootPhases.Booted, PhaseTimeout, new Progress(TextWriter.Null, enabled: false), cancellationToken))
                {
                    throw new InvalidOperationException("not every node booted after init");
                }
            }

            // Warm-up (JIT, first aTLS objects): nothing to recover, in parallel mode.
            await CliAsync(workspace, cancellationToken, "recover");

            var (parallel, _, parallelBooted, parallelQuorum) = await TimeRecoveryAsync(workspace, cloud, nodes, controlPlanes, [], cancellationToken);
            var line = $"N={n,2}{(workers > 0 ? $"+{workers}w" : "")}  parallel {parallel.TotalSeconds,6:0.00} s (etcd quorum {parallelQuorum.TotalSeconds:0.00} s, all booted {parallelBooted.TotalSeconds:0.00} s)";
            foreach (var interval in intervals)
            {
                var (lb, pushed, lbBooted, _) = await TimeRecoveryAsync(workspace, cloud, nodes, controlPlanes, ["--endpoint", loadBalancer, "--retry-interval", interval], cancellationToken);
                line += $" | load balancer (retry {interval}) {lb.TotalSeconds,6:0.00} s ({pushed}/{n} pushed, all booted {lbBooted.TotalSeconds:0.0} s)  ratio {lb / parallel,5:0.0}x";
            }
            return line;
        }
        finally
        {
            KeepLogs(workspace);
            if (LocalCloudClient.TryConnect(workspace) is { } running)
            {
                using (running)
                {
                    await running.ShutdownAsync(TimeSpan.FromSeconds(60), CancellationToken.None);
                }
            }
            Directory.Delete(workspace, recursive: true);
        }
    }

    /// <summary>
    /// With ASTERISM_BENCH_LOGS=DIR set, copies every instance's console log (JSON lines with UTC timestamps) to DIR
    /// before the workspace goes, so a run's timeline can be read afterwards (which node asked whom, when).
    /// </summary>
    private static void KeepLogs(string workspace)
    {
        if (Environment.GetEnvironmentVariable("ASTERISM_BENCH_LOGS") is not { Length: > 0 } target)
        {
            return;
        }
        var run = Directory.CreateDirectory(Path.Combine(target, Path.GetFileName(workspace))).FullName;
        var cloud = new CloudWorkspace(workspace);
        var logs = Directory.Exists(cloud.InstancesDir)
            ? Directory.GetDirectories(cloud.InstancesDir).Select(d => (Path.GetFileName(d) + ".log", cloud.ConsoleLogPath(Path.GetFileName(d))))
            : [];
        foreach (var (name, log) in logs.Append(("cloud.log", cloud.LogPath)).Where(l => File.Exists(l.Item2)))
        {
            File.Copy(log, Path.Combine(run, name), overwrite: true);
        }
        Progress($"logs kept in {run}");
    }

    /// <summary>
    /// Returns the recover command's wall time, how many nodes it pushed (the others rejoined on their own), and the
    /// times from the start of recover until every node reported booted and until etcd had a quorum again.
    /// </summary>
    private static async Task<(TimeSpan Elapsed, int Pushed, TimeSpan AllBooted, TimeSpan Quorum)> TimeRecoveryAsync(string workspace, LocalCloudClient cloud, IReadOnlyList<(string Name, string Address)> nodes,
        IReadOnlyList<(string Name, string Address)> controlPlanes, string[] mode, CancellationToken cancellationToken)
    {
        var label = mode.Length == 0 ? "parallel" : "load balancer " + mode[^1];
        Progress($"N={nodes.Count} {label}: crash + start every node");
        await cloud.PowerAsync(PowerAction.Crash, null, cancellationToken);
        await cloud.PowerAsync(PowerAction.Start, null, cancellationToken);
        var silent = new Progress(TextWriter.Null, enabled: false);
        if (!await NodeProbe.WaitForPhaseAsync(nodes, BootPhases.WaitingForKey, PhaseTimeout, silent, cancellationToken))
        {
            throw new InvalidOperationException($"not every node waits for a key after {PhaseTimeout.TotalSeconds} s");
        }
        // The operator runs recover well after the outage: let the load balancer's health checks (500 ms) see every
        // recovery port first, so neither mode is measured against a half-ready load balancer.
        await Task.Delay(TimeSpan.FromSeconds(1.5), cancellationToken);

        Progress($"N={nodes.Count} {label}: recover (starts {DateTime.UtcNow:HH:mm:ss.fff} UTC)");
        using var stopQuorum = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var watch = Stopwatch.StartNew();
        var quorum = WhenEtcdQuorumAsync(cloud.Workspace, controlPlanes, watch, stopQuorum.Token);
        var output = await CliAsync(workspace, cancellationToken, ["recover", .. mode]);
        var elapsed = watch.Elapsed;
        // The boot-status polling starts only now: polling N nodes every 100 ms (a fresh HTTP/2 connection each) while
        // recover runs took CPU from recover itself on two cores. "All booted" is still measured from recover's start;
        // a node that booted during recover is seen at the first poll, so that figure is at most ~one poll late.
        using var stopPolling = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var allBooted = WhenAllBootedAsync(nodes, watch, stopPolling.Token);
        // Parallel mode pushes every node; the load-balancer loop may find, after a retry interval, that the rest
        // rejoined on their own through the first recovered node (as Constellation's loop does).
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var pushed = lines.Length - 1;
        var expected = Enumerable.Repeat(RecoverCommand.PushedLine, pushed).Append(RecoverCommand.RecoveredLine(pushed));
        if (pushed < 1 || (mode.Length == 0 && pushed != controlPlanes.Count) || !lines.SequenceEqual(expected))
        {
            throw new InvalidOperationException($"unexpected recover output ({label}):\n{output}");
        }
        stopPolling.CancelAfter(PhaseTimeout);
        var booted = await allBooted ?? throw new InvalidOperationException($"not every node booted after recover ({label})");
        stopQuorum.CancelAfter(PhaseTimeout);
        var quorumAt = await quorum ?? throw new InvalidOperationException($"etcd did not regain a quorum after recover ({label})");
        Progress($"N={nodes.Count} {label}: {elapsed.TotalSeconds:0.00} s, {pushed} pushed, etcd quorum after {quorumAt.TotalSeconds:0.00} s, all booted after {booted.TotalSeconds:0.00} s");
        return (elapsed, pushed, booted, quorumAt);
    }

    /// <summary>
    /// From the start of recover, every 50 ms: a linearizable read of the node registry through the recovered control
    /// planes' etcd members, with control-plane-0's own client certificate (on its state filesystem, there once it is
    /// mounted again). The first answer means a quorum of members is up and has a leader.
    /// </summary>
    private static async Task<TimeSpan?> WhenEtcdQuorumAsync(CloudWorkspace files, IReadOnlyList<(string Name, string Address)> controlPlanes, Stopwatch watch, CancellationToken cancellationToken)
    {
        var client = Path.Combine(files.NodeStateDir(controlPlanes[0].Name), "etcd", "client");
        var endpoints = controlPlanes.Select(c => new Uri($"https://{c.Address}:2379")).ToList();
        try
        {
            while (true)
            {
                try
                {
                    using var etcd = new Asterism.ControlPlane.EtcdConnection(endpoints,
                        new Asterism.ControlPlane.TlsFiles(Path.Combine(client, "client.crt"), Path.Combine(client, "client.key"), Path.Combine(client, "ca.crt")), TimeSpan.FromMilliseconds(500));
                    await new Asterism.ControlPlane.NodeRegistry(etcd).ListAsync(cancellationToken);
                    return watch.Elapsed;
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or Asterism.ControlPlane.ControlPlaneException or Grpc.Core.RpcException)
                {
                    // Not mounted yet, or no quorum yet.
                }
                await Task.Delay(50, cancellationToken);
            }
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>
    /// Polls the boot status of every node that has not booted yet (every 100 ms); the time when all report booted.
    /// A node that reported booted is not asked again: each call is a fresh HTTP/2 connection, and a control plane's
    /// answer includes an etcd quorum probe, so polling booted nodes took CPU and etcd time from the nodes still
    /// booting — the very thing measured.
    /// </summary>
    private static async Task<TimeSpan?> WhenAllBootedAsync(IReadOnlyList<(string Name, string Address)> nodes, Stopwatch watch, CancellationToken cancellationToken)
    {
        var pending = nodes.ToList();
        try
        {
            while (true)
            {
                var statuses = await Task.WhenAll(pending.Select(n => NodeProbe.BootStatusAsync(n.Address, cancellationToken)));
                pending = [.. pending.Where((_, i) => statuses[i]?.Phase != BootPhases.Booted)];
                if (pending.Count == 0)
                {
                    return watch.Elapsed;
                }
                await Task.Delay(100, cancellationToken);
            }
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    private static async Task<string> CliAsync(string workspace, CancellationToken cancellationToken, params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var code = await Asterism.Cli.Program.RunAsync([.. args, "-C", workspace], TextWriter.Synchronized(stdout), TextWriter.Synchronized(stderr), cancellationToken);
        if (code != 0)
        {
            throw new InvalidOperationException($"asterism {string.Join(' ', args)} exited {code}:\n{stdout}{stderr}");
        }
        return stdout.ToString();
    }

    private static void Progress(string message) => Console.Error.WriteLine($"[{DateTime.Now:HH:mm:ss}] {message}");
}
