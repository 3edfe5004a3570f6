using System.Globalization;
using System.Text.Json;
using Asterism.Cli.Commands;
using Asterism.Cloud;
using Asterism.Config;
using Asterism.Crypto;
using Asterism.EndToEnd.Tests.Infrastructure;
using Asterism.Protocol;
using Asterism.Tests;
using Xunit.Abstractions;

namespace Asterism.EndToEnd.Tests.Operator;

/// <summary>
/// Issue 7 acceptance: the operator's CLI against one real 3 control-plane + 2 worker local cluster, in ordered
/// steps (nothing to recover, partial outage, full outage with status, wrong secret, parallel recover, recover
/// through the load balancer, bad input, terminate).
/// </summary>
public abstract class OperatorCliTests<TCluster>(TCluster cluster, ITestOutputHelper output)
    where TCluster : ClusterFixture
{
    private static readonly string[] NodeKeys = ["name", "role", "address", "power", "phase", "waitingSince", "lastError", "identity"];

    protected TCluster Cluster { get; } = cluster;

    [Fact]
    [Step(1)]
    public async Task CreateInit_PrintWhatWasMade_StatusJsonAllBooted()
    {
        await Cluster.EnsureAllBootedAsync();
        var created = Cluster.Created;
        Assert.StartsWith("Created cluster ", created.StdoutLines[0], StringComparison.Ordinal);
        foreach (var node in Cluster.Instances)
        {
            Assert.Contains(created.StdoutLines, l => l.Contains(node.Name, StringComparison.Ordinal) && l.Contains(node.Address, StringComparison.Ordinal)
                && l.Contains(node.Role, StringComparison.Ordinal));
        }
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Cluster.MasterSecretPath));
        var state = ClusterState.Load(Path.Combine(Cluster.Workspace, ClusterState.FileName));
        Assert.Matches("^[0-9a-f]{64}$", state.ClusterValues.ClusterId);
        Assert.Matches("^[0-9a-f]{64}$", state.ClusterValues.MeasurementSalt);
        Assert.Contains(state.ClusterValues.ClusterId!, Cluster.Initialized.Stdout, StringComparison.Ordinal);

        var status = await StatusJsonAsync();
        Assert.Equal("healthy", status.GetProperty("clusterApi").GetString());
        foreach (var node in Nodes(status))
        {
            Assert.Equal("running", node.GetProperty("power").GetString());
            Assert.Equal("booted", node.GetProperty("phase").GetString());
            Assert.Equal(JsonValueKind.Null, node.GetProperty("waitingSince").ValueKind);
            Assert.Equal(JsonValueKind.Null, node.GetProperty("lastError").ValueKind);
        }
        await Cluster.WriteDataEverywhereAsync("before-outages");
    }

    [Fact]
    [Step(2)]
    public async Task Recover_NothingToRecover_PrintsExactLineExit0_BothModes()
    {
        await Cluster.EnsureAllBootedAsync();
        var parallel = await Cluster.Cli.RunAsync("recover");
        Assert.True(parallel.ExitCode == 0, parallel.ToString());
        Assert.Equal([RecoverCommand.NothingLine], parallel.StdoutLines);

        var throughLb = await Cluster.Cli.RunAsync("recover", "--endpoint", LoadBalancer(), "--retry-interval", "1s");
        Assert.True(throughLb.ExitCode == 0, throughLb.ToString());
        Assert.Equal([RecoverCommand.NothingLine], throughLb.StdoutLines);
        output.WriteLine($"nothing to recover: parallel {parallel.Elapsed.TotalMilliseconds:0} ms, load balancer {throughLb.Elapsed.TotalMilliseconds:0} ms");

        // Constellation's loop retries one "unavailable" answer after the interval, then gives up: about 1 s here.
        Assert.InRange(throughLb.Elapsed, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(10));
        await Cluster.EnsureAllBootedAsync();
    }

    [Fact]
    [Step(3)]
    public async Task PartialOutage_ControlPlaneAndWorkerCrash_BothBackWithoutRecover()
    {
        await Cluster.EnsureAllBootedAsync();
        var crashed = new[] { Cluster.ControlPlaneNodes[2], Cluster.WorkerNodes[1] };
        var names = crashed.Select(n => n.Name).ToArray();
        var crash = await Cluster.Cli.RunOkAsync(["power", "crash", .. names]);
        Assert.All(names, n => Assert.Contains($"{n}: crash -> stopped", crash.Stdout, StringComparison.Ordinal));
        var listed = (await Cluster.ListAsync()).ToDictionary(i => i.Name);
        Assert.All(names, n => Assert.Equal("stopped", listed[n].Power));

        var status = await StatusJsonAsync();
        foreach (var node in Nodes(status).Where(n => names.Contains(n.GetProperty("name").GetString())))
        {
            Assert.Equal("stopped", node.GetProperty("power").GetString());
        }

        await Cluster.Cli.RunOkAsync(["power", "start", .. names]);
        await Cluster.WaitForPhaseAsync(Cluster.Instances, BootPhases.Booted);
        foreach (var node in crashed)
        {
            var boot = Cluster.Log(node).Entries();
            Assert.Contains(boot, e => e.Is("INFO", "rejoinClient", "Successfully retrieved rejoin ticket"));
            Assert.DoesNotContain(boot, e => e.Msg == "Received recover call");
        }
        await Cluster.AssertDataIntactAsync();
    }

    [Fact]
    [Step(4)]
    public async Task FullOutage_StatusJsonShowsEveryNodeWaitingForKey()
    {
        await Cluster.EnsureAllBootedAsync();
        await FullOutageAsync();

        // lastError appears after the first failed rejoin round.
        var (status, _) = await Poll.UntilAsync(StatusJsonAsync,
            s => Nodes(s).All(n => n.GetProperty("lastError").ValueKind == JsonValueKind.String), ClusterFixture.BootTimeout, TimeSpan.FromMilliseconds(250));
        output.WriteLine(status.GetRawText());
        Assert.Equal("unreachable", status.GetProperty("clusterApi").GetString());
        foreach (var node in Nodes(status))
        {
            Assert.Equal("running", node.GetProperty("power").GetString());
            Assert.Equal("waiting-for-key", node.GetProperty("phase").GetString());
            var since = node.GetProperty("waitingSince").GetString();
            Assert.True(DateTimeOffset.TryParseExact(since, "yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t), since);
            Assert.InRange(t, DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddSeconds(5));
            Assert.False(string.IsNullOrEmpty(node.GetProperty("lastError").GetString()));
        }

        var text = await Cluster.Cli.RunOkAsync("status");
        Assert.Contains("waiting for decryption key since", text.Stdout, StringComparison.Ordinal);
        Assert.Contains("Recovery needed", text.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    [Step(5)]
    public async Task Recover_MasterSecretOfAnotherCluster_RefusedBeforeContactingAnyNode_DisksUntouched()
    {
        await Cluster.WaitForPhaseAsync(Cluster.Instances, BootPhases.WaitingForKey);
        var other = Path.Combine(Cluster.Workspace, "other-cluster-mastersecret.json");
        using (var foreign = MasterSecret.Generate())
        {
            foreign.Save(other);
        }
        var hashes = Cluster.Instances.ToDictionary(n => n.Name, Cluster.DiskHash);
        var result = await Cluster.Cli.RunAsync("recover", "--master-secret", other);
        output.WriteLine(result.ToString());
        Assert.NotEqual(0, result.ExitCode);
        Assert.DoesNotContain(RecoverCommand.PushedLine, result.Stdout, StringComparison.Ordinal);
        // The node record is MAC'd with a key from the real master secret: another cluster's secret is refused before
        // any node is contacted (no node logs a recover call), with one line that says why.
        Assert.Contains(result.StderrLines, l => l.Contains("node record", StringComparison.Ordinal) && l.Contains("another master secret", StringComparison.Ordinal));
        Assert.All(Cluster.ControlPlaneNodes, cp => Assert.DoesNotContain(cp.Name, result.Stderr, StringComparison.Ordinal));
        await Cluster.WaitForPhaseAsync(Cluster.Instances, BootPhases.WaitingForKey, TimeSpan.FromSeconds(10));
        Assert.All(Cluster.Instances, n => Assert.True(hashes[n.Name] == Cluster.DiskHash(n), $"disk of {n.Name} changed"));
    }

    [Fact]
    [Step(6)]
    public async Task Recover_Parallel_AllNodesBoot_DataIntact_ExactOutput()
    {
        await Cluster.WaitForPhaseAsync(Cluster.Instances, BootPhases.WaitingForKey);
        var result = await Cluster.Cli.RunAsync("recover");

        // Every waiting node is pushed at once. Only on a starved machine can a node's own rejoin round (through a
        // node recovered a moment earlier) beat its push; then the push finds it recovered and is not counted.
        await AssertRecoverSucceededAsync(result);
    }

    [Fact]
    [Step(7)]
    public async Task Recover_ThroughLoadBalancer_AllNodesBoot_DataIntact_ExactOutput()
    {
        await Cluster.EnsureAllBootedAsync();
        await FullOutageAsync();
        var result = await Cluster.Cli.RunAsync("recover", "--endpoint", LoadBalancer(), "--retry-interval", "1s");

        // The loop pushes one node at a time. When a push meets the load balancer still routing to a node that just
        // closed its recovery port, the CLI waits one interval; meanwhile the remaining nodes may rejoin on their own
        // through the recovered one (as in Constellation). So k of N nodes are pushed, each printed, then the count.
        await AssertRecoverSucceededAsync(result);
    }

    /// <summary>Exit 0, k of N control planes pushed (1 ≤ k ≤ N), exactly the expected lines, then every node recovered.</summary>
    private async Task AssertRecoverSucceededAsync(CliResult result)
    {
        output.WriteLine(result.ToString());
        Assert.True(result.ExitCode == 0, result.ToString());
        var pushed = result.StdoutLines.Count - 1;
        Assert.InRange(pushed, 1, Cluster.ControlPlanes);
        Assert.Equal(ExpectedRecoverLines(pushed), result.StdoutLines);
        await AssertRecoveredAsync(pushed);
    }

    [Fact]
    [Step(8)]
    public async Task BadInput_ClearErrorAndNoChange()
    {
        await Cluster.EnsureAllBootedAsync();
        var before = await Snapshot();
        var unknown = Cluster.Instances[0].Name + "-nope";

        var logs = await Cluster.Cli.RunAsync("logs", unknown);
        AssertError(logs, 1, $"unknown node \"{unknown}\"");
        Assert.Contains(Cluster.Instances[0].Name, logs.Stderr, StringComparison.Ordinal);

        var power = await Cluster.Cli.RunAsync("power", "crash", Cluster.Instances[0].Name, unknown);
        AssertError(power, 1, unknown);

        var neither = await Cluster.Cli.RunAsync("power", "stop");
        AssertError(neither, 2, "--all");
        var both = await Cluster.Cli.RunAsync("power", "stop", "--all", Cluster.Instances[0].Name);
        AssertError(both, 2, "--all");

        var create = await Cluster.Cli.RunAsync("create");
        AssertError(create, 1, "already exists");

        var missing = Path.Combine(Cluster.Workspace, "no-such-mastersecret.json");
        var noSecret = await Cluster.Cli.RunAsync("recover", "--master-secret", missing);
        AssertError(noSecret, 1, missing);

        var malformed = Path.Combine(Cluster.Workspace, "malformed-mastersecret.json");
        await File.WriteAllTextAsync(malformed, "{\"key\": \"not base64!\", \"salt\": 7}");
        File.SetUnixFileMode(malformed, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var bad = await Cluster.Cli.RunAsync("recover", "--master-secret", malformed);
        AssertError(bad, 1, malformed);

        var init = await Cluster.Cli.RunAsync("init");
        AssertError(init, 1, "already initialized");

        Assert.Equal(before, await Snapshot());
        await Cluster.EnsureAllBootedAsync();
    }

    [Fact]
    [Step(99, AfterFailure = true)]
    public async Task Terminate_StopsEverything_LaterCommandsExplain()
    {
        // The provider, every node, and each control plane's etcd member (its data directory is in the workspace).
        Assert.Equal(1 + Cluster.Instances.Count + Cluster.ControlPlaneNodes.Count, Cluster.LiveProcesses().Count);
        var result = await Cluster.Cli.RunOkAsync("terminate");
        Assert.Contains("Terminated.", result.Stdout, StringComparison.Ordinal);
        Assert.Empty(await Processes.WaitGoneAsync(Cluster.Workspace, TimeSpan.FromSeconds(10)));
        Assert.True(File.Exists(Cluster.MasterSecretPath), "terminate without --purge keeps the master secret");

        var status = await Cluster.Cli.RunAsync("status");
        AssertError(status, 1, "no cluster");
    }

    private static string[] ExpectedRecoverLines(int n) =>
        [.. Enumerable.Repeat(RecoverCommand.PushedLine, n), RecoverCommand.RecoveredLine(n)];

    private async Task FullOutageAsync()
    {
        var crash = await Cluster.Cli.RunOkAsync("power", "crash", "--all");
        Assert.Equal(Cluster.Instances.Count, crash.StdoutLines.Count(l => l.EndsWith(": crash -> stopped", StringComparison.Ordinal)));
        Assert.All(await Cluster.ListAsync(), i => Assert.Equal("stopped", i.Power));
        await Cluster.Cli.RunOkAsync("power", "start", "--all");
        await Cluster.WaitForPhaseAsync(Cluster.Instances, BootPhases.WaitingForKey);
    }

    /// <summary>Every node booted with its data; exactly <paramref name="pushed"/> control planes took a pushed key, the others rejoined.</summary>
    private async Task AssertRecoveredAsync(int pushed)
    {
        await Cluster.WaitForPhaseAsync(Cluster.Instances, BootPhases.Booted);
        await Cluster.AssertDataIntactAsync();
        var recovered = Cluster.ControlPlaneNodes
            .Where(cp => Cluster.Log(cp).Entries().Any(e => e.Is("INFO", "recoveryServer", "Received state disk key and measurement secret, shutting down server")))
            .ToList();
        Assert.Equal(pushed, recovered.Count);
        foreach (var node in Cluster.Instances.Except(recovered))
        {
            Assert.Contains(Cluster.Log(node).Entries(), e => e.Is("INFO", "rejoinClient", "Successfully retrieved rejoin ticket"));
        }
        var status = await StatusJsonAsync();
        Assert.Equal("healthy", status.GetProperty("clusterApi").GetString());
        Assert.All(Nodes(status), n => Assert.Equal("booted", n.GetProperty("phase").GetString()));
    }

    private string LoadBalancer() => ClusterState.Load(Path.Combine(Cluster.Workspace, ClusterState.FileName)).Infrastructure.ClusterEndpoint;

    /// <summary>`status --json`, with its shape checked: exactly the keys of issue 7, in every node object.</summary>
    private async Task<JsonElement> StatusJsonAsync()
    {
        var result = await Cluster.Cli.RunOkAsync("status", "--json");
        Assert.Single(result.StdoutLines);
        var root = JsonDocument.Parse(result.Stdout).RootElement.Clone();
        Assert.Equal(["nodes", "clusterApi"], root.EnumerateObject().Select(p => p.Name));
        Assert.Contains(root.GetProperty("clusterApi").GetString(), new[] { "healthy", "unreachable" });
        var nodes = Nodes(root).ToList();
        Assert.Equal(Cluster.Instances.Select(i => i.Name), nodes.Select(n => n.GetProperty("name").GetString()));
        foreach (var node in nodes)
        {
            Assert.Equal(NodeKeys, node.EnumerateObject().Select(p => p.Name));
            var instance = Cluster.Node(node.GetProperty("name").GetString()!);
            Assert.Equal(instance.Role, node.GetProperty("role").GetString());
            Assert.Contains(node.GetProperty("role").GetString(), new[] { "control-plane", "worker" });
            Assert.Equal(instance.Address, node.GetProperty("address").GetString());
            var power = node.GetProperty("power").GetString();
            Assert.Contains(power, new[] { "running", "stopped" });
            var phase = node.GetProperty("phase");
            if (power == "running")
            {
                Assert.Contains(phase.GetString(), new[] { "booting", "waiting-for-key", "booted" });
            }
            Assert.True(node.GetProperty("waitingSince").ValueKind is JsonValueKind.String or JsonValueKind.Null);
            Assert.True(node.GetProperty("lastError").ValueKind is JsonValueKind.String or JsonValueKind.Null);
        }
        return root;
    }

    private static IEnumerable<JsonElement> Nodes(JsonElement status) => status.GetProperty("nodes").EnumerateArray();

    /// <summary>What "no change" means: every node's power state and boot count, and the workspace files.</summary>
    private async Task<string> Snapshot()
    {
        var instances = await Cluster.ListAsync();
        var files = new[] { ClusterState.FileName, ClusterConfig.FileName, MasterSecret.DefaultFileName }
            .Select(f => f + "=" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(Cluster.Workspace, f)))));
        return string.Join('\n', instances.Select(i => $"{i.Name} {i.Power} pid={i.Pid} boots={i.Boots}").Concat(files));
    }

    private static void AssertError(CliResult result, int exitCode, string mentions)
    {
        Assert.True(result.ExitCode == exitCode, result.ToString());
        Assert.Contains("Error:", result.Stderr, StringComparison.Ordinal);
        Assert.Contains(mentions, result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain(RecoverCommand.PushedLine, result.Stdout, StringComparison.Ordinal);
    }
}

public sealed class OperatorCliSimulatedTests(SimulatedCluster cluster, ITestOutputHelper output)
    : OperatorCliTests<SimulatedCluster>(cluster, output), IClassFixture<SimulatedCluster>;
