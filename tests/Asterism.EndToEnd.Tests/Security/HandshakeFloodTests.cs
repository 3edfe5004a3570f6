using System.Net;
using Asterism.Cli.Commands;
using Asterism.Cloud;
using Asterism.EndToEnd.Tests.Infrastructure;
using Asterism.Protocol;
using Asterism.Tests;
using Xunit.Abstractions;

namespace Asterism.EndToEnd.Tests.Security;

/// <summary>2 control-plane + 1 worker nodes, created and initialized: the smallest cluster whose recovery is parallel.</summary>
public sealed class FloodCluster : ClusterFixture
{
    public override string Variant => "simulated";

    public override int ControlPlanes => 2;

    public override int Workers => 1;
}

/// <summary>
/// Issue 12 (M4, deliverable 8): a handshake flood against every waiting control plane's recovery port while the
/// operator runs `recover`. The attacker is any local process: it needs nothing but the nodes' addresses.
/// </summary>
public sealed class HandshakeFloodTests(FloodCluster cluster, ITestOutputHelper output) : IClassFixture<FloodCluster>
{
    /// <summary>
    /// Per target, 180 attackers: below the listener's 256 pending handshakes, so what this shows is the FIFO queue
    /// for attestation work and the ClientHello timeout, not shedding (HandshakeBudgetTests cover that).
    /// ASTERISM_E2E_FLOOD_IDLE overrides the idle attackers per target, to reproduce the weakness described below.
    /// </summary>
    private static readonly HandshakeFlood.Size PerTarget = new(
        Idle: int.TryParse(Environment.GetEnvironmentVariable("ASTERISM_E2E_FLOOD_IDLE"), out var idle) && idle > 0 ? idle : 110,
        Hello: 50,
        Handshakes: 20);

    /// <summary>Bounds of the flood itself; it normally ends earlier, when every recovery port has closed.</summary>
    private static readonly TimeSpan FloodLimit = TimeSpan.FromSeconds(120);

    private const long ConnectionLimit = 100_000;

    /// <summary>
    /// The cluster goes down (`power crash --all`, `power start --all`): both control planes wait for their key on
    /// :9999. A flood starts against both recovery ports (idle connections, ClientHellos that vanish after the node
    /// has attested, complete handshakes) and, once it is underway, the operator runs the real `asterism recover`
    /// (parallel). Required: exit 0 with exactly the expected lines, every node booted, data intact, and the flood
    /// really ran (every target issued documents for attackers, and more of them while recover ran).
    ///
    /// A regression guard, not a reproducer. With the simulated variant an attestation costs about a millisecond of
    /// CPU, so `recover` also survived this flood on nodes without the budgets: checked once with a temporary,
    /// uncommitted build whose listeners had MaxPendingHandshakes and MaxConcurrentAttestations at int.MaxValue and
    /// 10 s to the ClientHello (what the listener had before 40d3ee0): exit 0, both nodes pushed, 3.8 s. It does fail
    /// when the budget turns against the operator: with MaxPendingHandshakes at 8 the idle attackers shed the
    /// operator's connections and `recover` printed "No control-plane nodes in need of recovery found. Exiting." and
    /// exited 0 while both control planes still waited for their key. The same false success happens with the default
    /// budget when the idle attackers outnumber MaxPendingHandshakes (ASTERISM_E2E_FLOOD_IDLE=1000: in one of five
    /// runs; see the README of this project, "Known weakness").
    /// </summary>
    [Fact]
    public async Task Recover_HandshakeFloodOnEveryRecoveryPort_EveryNodeRecovered_DataIntact()
    {
        await cluster.EnsureAllBootedAsync();
        await cluster.WriteDataEverywhereAsync("before-flood");
        await cluster.Cli.RunOkAsync("power", "crash", "--all");
        await cluster.Cli.RunOkAsync("power", "start", "--all");
        await cluster.WaitForPhaseAsync(cluster.Instances, BootPhases.WaitingForKey);
        var targets = cluster.ControlPlaneNodes;
        foreach (var node in targets)
        {
            await WaitForRecoveryPortAsync(node);
        }

        CliResult recover;
        HandshakeFlood.Counts[] atStart, atEnd;
        output.WriteLine($"attackers per target: {PerTarget}");
        await using (var flood = HandshakeFlood.Start([.. targets.Select(n => new IPEndPoint(IPAddress.Parse(n.Address), Ports.Recovery))],
            PerTarget, FloodLimit, ConnectionLimit))
        {
            try
            {
                await flood.Underway.Task.WaitAsync(ClusterFixture.BootTimeout);
            }
            catch (TimeoutException)
            {
                Assert.Fail($"the flood did not get underway within {ClusterFixture.BootTimeout.TotalSeconds:0} s: {Describe(flood.Snapshot())}");
            }
            output.WriteLine($"flood underway after {flood.Elapsed.TotalSeconds:0.0} s: {Describe(flood.Snapshot())}");
            atStart = [.. flood.Snapshot()];
            // --timeout 90s: this test asks whether the operator gets through the flood, not how fast (on two cores shared
            // with other suites a push under the flood once needed more than the default 30 s); the time is printed.
            recover = await cluster.Cli.RunAsync("recover", "--timeout", "90s");
            atEnd = [.. flood.Snapshot()];
            await flood.StopAsync();
            output.WriteLine(recover.ToString());
            output.WriteLine($"recover took {recover.Elapsed.TotalSeconds:0.00} s under the flood");
            output.WriteLine($"while recover ran: {Describe(atEnd.Zip(atStart, (a, b) => a - b).ToList())}");
            output.WriteLine($"whole flood ({flood.Elapsed.TotalSeconds:0.0} s, {flood.Connections} connections): {Describe(flood.Snapshot())}");
        }

        // The flood really ran: every recovery port issued documents for attackers, and went on doing so during recover.
        Assert.All(atStart, c => Assert.True(c.Attestations >= PerTarget.Hello + PerTarget.Handshakes, $"too few attestations forced before recover: {c}"));
        Assert.True(atEnd.Zip(atStart, (a, b) => (a - b).Attestations).Sum() > 0, "no attacker got a document while recover ran: the flood was not in its way");

        if (recover.Stdout.Contains(RecoverCommand.NothingLine, StringComparison.Ordinal))
        {
            var phases = await Task.WhenAll(targets.Select(async n => $"{n.Name}: {(await cluster.StatusAsync(n))?.Phase ?? "(no answer)"}"));
            Assert.Fail($"recover found nothing to recover while every control plane waited for its key (its connections were dropped "
                + $"by the flood and taken for \"not waiting\"); now: {string.Join(", ", phases)}\n{recover}");
        }
        Assert.True(recover.ExitCode == 0, recover.ToString());
        var pushed = recover.StdoutLines.Count - 1;
        Assert.InRange(pushed, 1, cluster.ControlPlanes);
        Assert.Equal([.. Enumerable.Repeat(RecoverCommand.PushedLine, pushed), RecoverCommand.RecoveredLine(pushed)], recover.StdoutLines);
        await cluster.WaitForPhaseAsync(cluster.Instances, BootPhases.Booted);
        await cluster.AssertDataIntactAsync();

        // As in the operator tests: a control plane that recovered first may serve the other's rejoin before its push
        // arrives. Every node not pushed must have rejoined; none may have been left waiting.
        var recovered = targets.Where(cp => cluster.Log(cp).Entries().Any(e => e.Is("INFO", "recoveryServer", "Received state disk key and measurement secret, shutting down server"))).ToList();
        Assert.Equal(pushed, recovered.Count);
        foreach (var node in cluster.Instances.Except(recovered))
        {
            Assert.Contains(cluster.Log(node).Entries(), e => e.Is("INFO", "rejoinClient", "Successfully retrieved rejoin ticket"));
        }
    }

    private static string Describe(IReadOnlyList<HandshakeFlood.Counts> counts) =>
        string.Join(" | ", counts.Select((c, i) => $"target {i}: {c}"));

    /// <summary>A node reports waiting before its recovery listener is up: the flood starts once it is.</summary>
    private static async Task WaitForRecoveryPortAsync(InstanceInfo node)
    {
        Assert.True(await Poll.UntilAsync(() => ClusterFixture.RecoveryPortOpenAsync(node), ClusterFixture.BootTimeout, TimeSpan.FromMilliseconds(100)),
            $"{node.Name} does not listen on {Ports.Recovery}");
    }
}
