using Asterism.Cloud;
using Asterism.ControlPlane;
using Asterism.EndToEnd.Tests.Infrastructure;
using Asterism.Protocol;
using Asterism.Tests;
using Xunit.Abstractions;

namespace Asterism.EndToEnd.Tests.NodeBoot;

/// <summary>3 control planes + 1 worker, every node booted.</summary>
public sealed class ControlPlaneReplacementCluster : ClusterFixture
{
    public override string Variant => "simulated";

    public override int Workers => 1;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        await EnsureAllBootedAsync();
    }

    /// <summary>A connection to etcd with <paramref name="controlPlane"/>'s own client certificate, through the given members.</summary>
    public EtcdConnection Etcd(InstanceInfo controlPlane, params InstanceInfo[] members)
    {
        var client = Path.Combine(Files.NodeStateDir(controlPlane.Name), "etcd", "client");
        var tls = new TlsFiles(Path.Combine(client, "client.crt"), Path.Combine(client, "client.key"), Path.Combine(client, "ca.crt"));
        return new EtcdConnection(members.Select(m => new Uri($"https://{m.Address}:2379")), tls, TimeSpan.FromSeconds(3));
    }
}

/// <summary>
/// Issue #15 acceptance, "member removal and a replacement control plane joining": a control plane crashes for good,
/// the operator removes it (`node remove`: its etcd membership goes, its registry entry stays as a deny record) and
/// adds a replacement (`node add --control-plane`: the provider starts a new instance, which joins through a
/// JoinService as a learner and is promoted). etcd has three voting members again, and the quorum holds without the
/// original first control plane: a rebooted worker gets its key.
/// </summary>
public sealed class ControlPlaneReplacementTests(ControlPlaneReplacementCluster cluster, ITestOutputHelper output) : IClassFixture<ControlPlaneReplacementCluster>
{
    private static InstanceInfo? _replacement;

    private InstanceInfo Cp(int i) => cluster.ControlPlaneNodes[i];

    private InstanceInfo Worker => cluster.WorkerNodes[0];

    [Fact]
    [Step(1)]
    public async Task CrashedControlPlane_NodeRemove_LeavesTwoMembers()
    {
        await cluster.Cli.RunOkAsync("power", "crash", Cp(2).Name);
        var removed = await cluster.Cli.RunOkAsync("node", "remove", Cp(2).Name);
        Assert.Contains($"Removed {Cp(2).Name} from etcd and the registry.", removed.Stdout, StringComparison.Ordinal);
        using var etcd = cluster.Etcd(Cp(0), Cp(0), Cp(1));
        var members = await new EtcdMembership(etcd).ListAsync();
        Assert.Equal(new[] { Cp(0).Name, Cp(1).Name }.Order(), members.Select(m => m.Name).Order());
    }

    [Fact]
    [Step(2)]
    public async Task NodeAddControlPlane_ReplacementJoins_ThreeVotingMembersAgain()
    {
        var refused = await cluster.Cli.RunAsync("node", "add");
        Assert.Equal(2, refused.ExitCode);
        var added = await cluster.Cli.RunOkAsync("node", "add", "--control-plane");
        output.WriteLine(added.Stdout);
        var name = Cp(0).Name[..^1] + "3";
        Assert.Contains($"Added {name} at ", added.Stdout, StringComparison.Ordinal);
        _replacement = (await cluster.ListAsync()).Single(i => i.Name == name);
        Assert.True(_replacement.IsControlPlane);
        Assert.DoesNotContain(cluster.Instances, i => i.Address == _replacement.Address);
        await cluster.WaitForPhaseAsync([_replacement], BootPhases.Booted);

        using var etcd = cluster.Etcd(Cp(0), Cp(0), Cp(1), _replacement);
        var (members, promoted) = await Poll.UntilAsync(() => new EtcdMembership(etcd).ListAsync(),
            m => m.Count == 3 && m.All(x => !x.IsLearner), Poll.Hang, TimeSpan.FromMilliseconds(250));
        Assert.True(promoted, $"members: {string.Join(", ", members.Select(m => $"{m.Name}{(m.IsLearner ? " (learner)" : "")}"))}");
        Assert.Equal(new[] { Cp(0).Name, Cp(1).Name, name }.Order(), members.Select(m => m.Name).Order());
        var record = await new NodeRegistry(etcd).GetAsync(name);
        Assert.Equal(NodeRole.ControlPlane, record?.Role);
        // Removed (not revoked first): its registry entry went with its membership.
        Assert.Null(await new NodeRegistry(etcd).GetAsync(Cp(2).Name));
        var (status, up) = await Poll.UntilAsync(() => cluster.Cli.RunOkAsync("status"),
            s => s.Stdout.Contains("etcd: 3 of 3 members up, quorum needs 2", StringComparison.Ordinal), Poll.Hang, TimeSpan.FromMilliseconds(500));
        Assert.True(up, status.Stdout);
    }

    [Fact]
    [Step(3)]
    public async Task FirstControlPlaneCrashes_QuorumHolds_WorkerRebootGetsItsKey()
    {
        var replacement = _replacement ?? throw new InvalidOperationException("step 2 did not add the replacement");
        await cluster.Cli.RunOkAsync("power", "crash", Cp(0).Name);
        await cluster.Cli.RunOkAsync("power", "reboot", Worker.Name);
        await cluster.WaitForPhaseAsync([Worker], BootPhases.Booted);
        using var etcd = cluster.Etcd(Cp(1), Cp(1), replacement);
        var audit = new AuditLog(etcd);
        var releases = 0;
        await foreach (var entry in audit.ReadAsync())
        {
            releases += entry.Kind == AuditKind.Release && entry.Node == Worker.Name ? 1 : 0;
        }
        Assert.True(releases >= 2, $"{releases} releases to the worker in the audit log (join + this rejoin expected)");
        Assert.True((await audit.VerifyAsync()).Intact);
    }

    [Fact]
    [Step(99, AfterFailure = true)]
    public async Task Terminate_LeavesNoProcess()
    {
        await cluster.Cli.RunOkAsync("terminate");
        Assert.Empty(cluster.LiveProcesses());
    }
}
