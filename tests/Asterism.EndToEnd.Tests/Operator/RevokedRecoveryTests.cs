using Asterism.Cli.Commands;
using Asterism.Cli.Recovery;
using Asterism.EndToEnd.Tests.Infrastructure;
using Asterism.Protocol;
using Xunit.Abstractions;

namespace Asterism.EndToEnd.Tests.Operator;

/// <summary>3 control planes, no worker: etcd keeps a quorum with one of them revoked.</summary>
public sealed class RevokedRecoveryCluster : ClusterFixture
{
    public override string Variant => "simulated";

    public override int Workers => 0;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        await EnsureAllBootedAsync();
    }
}

/// <summary>
/// Issue #15 item 4 with the whole control plane down: `node revoke` records the revocation in the workspace's registry
/// copy; after every control plane crashed, `recover` (and its dry run) refuse the revoked one by name — it is never
/// contacted and keeps waiting — while the others get their keys and boot. Bad input (an unknown node, the last etcd
/// member) is one line and changes neither the registry nor the copy.
/// </summary>
public sealed class RevokedRecoveryTests(RevokedRecoveryCluster cluster, ITestOutputHelper output) : IClassFixture<RevokedRecoveryCluster>
{
    private string Revoked => cluster.ControlPlaneNodes[2].Name;

    private RegistryCopyStore Copies => new(cluster.Workspace);

    [Fact]
    [Step(1)]
    public async Task Revoke_ControlPlane_CopyRecordsIt_UnknownNodeChangesNothing()
    {
        Assert.True(File.Exists(Copies.CopyPath), "init wrote no registry copy");
        var before = File.ReadAllBytes(Copies.CopyPath);

        var unknown = await cluster.Cli.RunAsync("node", "revoke", "no-such-node");
        Assert.Equal(1, unknown.ExitCode);
        Assert.Contains("no-such-node is not registered", Assert.Single(unknown.StderrLines, l => l.StartsWith("Error:", StringComparison.Ordinal)), StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(Copies.CopyPath));

        var revoked = await cluster.Cli.RunOkAsync("node", "revoke", Revoked);
        output.WriteLine(revoked.ToString());
        Assert.Contains($"'asterism recover' refuses {Revoked} too", revoked.Stdout, StringComparison.Ordinal);
        using var master = cluster.LoadMasterSecret();
        var copy = Copies.LoadForRecovery(master, null, out _);
        Assert.Equal([Revoked], copy!.Revoked);
    }

    [Fact]
    [Step(2)]
    public async Task CrashAll_Recover_RevokedControlPlaneRefusedAndKeepsWaiting_OthersBoot()
    {
        await cluster.Cli.RunOkAsync("power", "crash", "--all");
        await cluster.Cli.RunOkAsync("power", "start", "--all");
        await cluster.WaitForPhaseAsync(cluster.ControlPlaneNodes, BootPhases.WaitingForKey);
        var node = cluster.Node(Revoked);
        var refusedLine = $"Error: node {Revoked} ({node.Address}:{Ports.Recovery}): ";

        var dryRun = await cluster.Cli.RunAsync("recover", "--dry-run");
        output.WriteLine(dryRun.ToString());
        Assert.Equal(1, dryRun.ExitCode);
        Assert.StartsWith(refusedLine + $"a real run would refuse it and send no key: {Revoked} is revoked", Assert.Single(dryRun.StderrLines, l => l.StartsWith("Error:", StringComparison.Ordinal)), StringComparison.Ordinal);
        Assert.Contains(RecoveryRehearsal.WouldRecoverLine(2), dryRun.Stdout, StringComparison.Ordinal);

        var recover = await cluster.Cli.RunAsync("recover");
        output.WriteLine(recover.ToString());
        Assert.Equal(1, recover.ExitCode);
        Assert.StartsWith(refusedLine + $"refused, no key sent: {Revoked} is revoked", Assert.Single(recover.StderrLines, l => l.StartsWith("Error:", StringComparison.Ordinal)), StringComparison.Ordinal);
        Assert.Contains(RecoverCommand.RecoveredLine(2), recover.Stdout, StringComparison.Ordinal);

        await cluster.WaitForPhaseAsync(cluster.ControlPlaneNodes.Where(n => n.Name != Revoked), BootPhases.Booted);
        // The recovered control planes' JoinServices refuse its rejoin too: it keeps waiting, and nobody ever dialed its
        // recovery port (neither the rehearsal nor the real run).
        // The JoinService's refusal, not "connection refused" from a control plane still starting (which matched an
        // earlier "refuse" here and let the status check below run before etcd had its two members).
        await cluster.WaitForPhaseAsync([node], BootPhases.WaitingForKey,
            also: s => s.LastError.Contains("PermissionDenied", StringComparison.Ordinal) || s.LastError.Contains("registry refuses", StringComparison.Ordinal)
                || s.LastError.Contains("TLS handshake refused", StringComparison.Ordinal));
        var status = await cluster.StatusAsync(node);
        output.WriteLine($"{Revoked}: {status?.Phase}, last rejoin error: {status?.LastError}");
        Assert.DoesNotContain("Received recover call", File.ReadAllText(cluster.Files.ConsoleLogPath(Revoked)), StringComparison.Ordinal);
        var cliStatus = await cluster.Cli.RunOkAsync("status");
        Assert.Contains("etcd: 2 of 3 members up, quorum needs 2", cliStatus.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    [Step(3)]
    public async Task RemoveLastMember_OneLine_RegistryAndCopyUnchanged()
    {
        // The revoked member leaves etcd (its deny record stays), then a live one, which is stopped so the load balancer
        // sends the cluster API calls to the last member; removing that one is refused.
        await cluster.Cli.RunOkAsync("node", "remove", Revoked);
        await cluster.Cli.RunOkAsync("node", "remove", cluster.ControlPlaneNodes[1].Name);
        await cluster.Cli.RunOkAsync("power", "stop", cluster.ControlPlaneNodes[1].Name);
        var copyBefore = File.ReadAllBytes(Copies.CopyPath);
        var last = cluster.ControlPlaneNodes[0].Name;

        CliResult removed = null!;
        await WaitUntilAsync(async () =>
        {
            removed = await cluster.Cli.RunAsync("node", "remove", last);
            // While the load balancer still tries the stopped node the API is briefly unreachable; and when the removed
            // member was etcd's leader, the last one answers "no quorum" until it has elected itself (an election timeout).
            return !removed.Stderr.Contains("unreachable", StringComparison.Ordinal)
                && !removed.Stderr.Contains("control plane has no quorum", StringComparison.Ordinal);
        }, "the cluster API through the remaining member");

        output.WriteLine(removed.ToString());
        Assert.Equal(1, removed.ExitCode);
        Assert.StartsWith($"Error: {last} is the last etcd member", Assert.Single(removed.StderrLines, l => l.StartsWith("Error:", StringComparison.Ordinal)), StringComparison.Ordinal);
        Assert.Equal(copyBefore, File.ReadAllBytes(Copies.CopyPath));
        var list = await cluster.Cli.RunOkAsync("node", "list");
        Assert.Contains(list.StdoutLines, l => l.StartsWith(last + " ", StringComparison.Ordinal));
        Assert.Contains(list.StdoutLines, l => l.StartsWith(Revoked + " ", StringComparison.Ordinal) && l.Contains("revoked", StringComparison.Ordinal));
        using var master = cluster.LoadMasterSecret();
        Assert.Equal([Revoked], Copies.LoadForRecovery(master, null, out _)!.Revoked);
    }

    /// <summary>Polls <paramref name="condition"/> until it holds, up to the fixture's boot timeout.</summary>
    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(watch.Elapsed < ClusterFixture.BootTimeout, $"timed out waiting for {what}");
            await Task.Delay(200);
        }
    }

    [Fact]
    [Step(99, AfterFailure = true)]
    public async Task Terminate_LeavesNoProcess()
    {
        await cluster.Cli.RunOkAsync("terminate");
        Assert.Empty(cluster.LiveProcesses());
    }
}
