using Asterism.Cli.Commands;
using Asterism.Cli.Recovery;
using Asterism.Cloud;
using Asterism.Crypto;
using Asterism.EndToEnd.Tests.Infrastructure;
using Asterism.Protocol;

namespace Asterism.EndToEnd.Tests.Operator;

/// <summary>The smallest cluster that shows a node catching up: one control plane and one worker.</summary>
public sealed class RotationCluster : ClusterFixture
{
    public override string Variant => "simulated";

    public override int ControlPlanes => 1;

    public override int Workers => 1;

    /// <summary>A copy of the generation-1 master secret, taken before the rotation (what a careless operator keeps).</summary>
    public string OldSecretCopy => Path.Combine(Workspace, "..", Path.GetFileName(Workspace) + "-old-mastersecret.json");

    public override async Task DisposeAsync()
    {
        File.Delete(OldSecretCopy);
        await base.DisposeAsync();
    }
}

/// <summary>
/// Issue 16 item 4 end to end: `secret rotate` with the worker powered off; `--complete` refused naming it; the worker
/// starts and catches up; completion audits generation 1 void; after every node crashed, `recover` with the new secret
/// boots everything, and the saved generation-1 secret is refused — by the CLI before anything is sent, and by the
/// nodes themselves when pushed directly (they keep waiting).
/// </summary>
/// <remarks>
/// Assumes the node side of session 8 (src/Asterism.Node/README.md, "Master-secret rotation"): running nodes ask the
/// rotation service every rejoin interval, move keyslot 0 and confirm; a worker that was down catches up once it runs;
/// a node's recovery server answers a key of the void generation with FailedPrecondition and keeps waiting.
/// </remarks>
public sealed class RotationTests(RotationCluster cluster) : IClassFixture<RotationCluster>
{
    /// <summary>How long the nodes get to move their keyslots (they ask every rejoin interval; 2 cores, load 40).</summary>
    private static readonly TimeSpan CatchUp = TimeSpan.FromMinutes(5);

    private InstanceInfo Worker => cluster.WorkerNodes[0];

    private async Task<string> RotationStatusAsync() =>
        (await cluster.Cli.RunOkAsync("secret", "rotate", "--status")).Stdout;

    private async Task WaitForStatusAsync(Func<string, bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + CatchUp;
        var last = "";
        while (DateTime.UtcNow < deadline)
        {
            last = await RotationStatusAsync();
            if (condition(last))
            {
                return;
            }
            await Task.Delay(TimeSpan.FromSeconds(1));
        }
        Assert.Fail($"{what} not reached within {CatchUp.TotalMinutes} min; last 'secret rotate --status': {last}");
    }

    [Fact]
    [Step(1)]
    public async Task Rotate_WorkerOff_CompleteRefusedNamingIt_WorkerCatchesUp_CompleteAuditsVoid()
    {
        await cluster.EnsureAllBootedAsync();
        File.Copy(cluster.MasterSecretPath, cluster.OldSecretCopy, overwrite: true);
        var clusterId = new Asterism.Cli.Workspace(cluster.Workspace).LoadState().ClusterValues.ClusterId;
        await cluster.Cli.RunOkAsync("power", "stop", Worker.Name);

        var begun = await cluster.Cli.RunOkAsync("secret", "rotate");
        Assert.Contains(begun.StdoutLines, l => l.StartsWith("Rotation to generation 2 begun", StringComparison.Ordinal));
        Assert.True(File.Exists(Path.Combine(cluster.Workspace, SecretRotation.NextFileName)));

        // The control plane moves; the stopped worker cannot.
        await WaitForStatusAsync(s => s.Contains($"1 node(s) still on generation 1: {Worker.Name}", StringComparison.Ordinal), "only the worker behind");
        var status = await cluster.Cli.RunOkAsync("status");
        Assert.Contains(status.StdoutLines, l => l == $"Key rotation 1 -> 2 pending: 1 node(s) still on generation 1: {Worker.Name}");

        var refused = await cluster.Cli.RunAsync("secret", "rotate", "--complete");
        Assert.Equal(1, refused.ExitCode);
        Assert.StartsWith($"Error: cannot complete: 1 node(s) still on generation 1: {Worker.Name}", refused.StderrLines[0], StringComparison.Ordinal);
        var again = await cluster.Cli.RunAsync("secret", "rotate");
        Assert.Equal(1, again.ExitCode);
        Assert.StartsWith("Error: a rotation to generation 2 is in progress", again.StderrLines[0], StringComparison.Ordinal);

        await cluster.Cli.RunOkAsync("power", "start", Worker.Name);
        await cluster.WaitForPhaseAsync([Worker], BootPhases.Booted);
        await WaitForStatusAsync(s => s.Contains("every node is on generation 2", StringComparison.Ordinal), "every node on generation 2");

        var complete = await cluster.Cli.RunOkAsync("secret", "rotate", "--complete");
        Assert.Contains(complete.StdoutLines, l => l.StartsWith("Rotation complete: generation 2 is current; generation 1 is void", StringComparison.Ordinal));
        Assert.False(File.Exists(Path.Combine(cluster.Workspace, SecretRotation.NextFileName)));
        Assert.Equal(clusterId, new Asterism.Cli.Workspace(cluster.Workspace).LoadState().ClusterValues.ClusterId);
        Assert.Contains("Key generation 2; no rotation in progress.", await RotationStatusAsync(), StringComparison.Ordinal);

        var audit = await cluster.Cli.RunOkAsync("audit");
        Assert.Contains(audit.StdoutLines, l => l.Contains("generation 1 void", StringComparison.Ordinal));
        Assert.NotEqual(File.ReadAllBytes(cluster.OldSecretCopy), File.ReadAllBytes(cluster.MasterSecretPath));
    }

    [Fact]
    [Step(2)]
    public async Task CrashAll_OldSecretRefusedByCliAndByNodes_NewSecretRecoversEverything()
    {
        await cluster.Cli.RunOkAsync("power", "crash", "--all");
        await cluster.Cli.RunOkAsync("power", "start", "--all");
        var controlPlane = cluster.ControlPlaneNodes[0];
        await cluster.WaitForPhaseAsync([controlPlane], BootPhases.WaitingForKey);

        // The CLI refuses the void secret before contacting anyone.
        var cli = await cluster.Cli.RunAsync("recover", "--master-secret", cluster.OldSecretCopy);
        Assert.Equal(1, cli.ExitCode);
        Assert.StartsWith("Error: master secret file ", cli.StderrLines[0], StringComparison.Ordinal);
        Assert.Contains("is not this cluster's secret of generation 2", cli.StderrLines[0], StringComparison.Ordinal);

        // Pushed anyway (bypassing the CLI's check): the node refuses the generation-1 key and keeps waiting.
        using (var old = MasterSecret.Load(cluster.OldSecretCopy))
        {
            var pushed = await cluster.Pusher(old).PushAsync(RecoveryPusher.RecoveryEndpoint(controlPlane.Address), controlPlane.Name, CancellationToken.None);
            Assert.True(pushed.Outcome == PushOutcome.KeyRejected, pushed.ToString());
        }
        Assert.Equal(BootPhases.WaitingForKey, (await cluster.StatusAsync(controlPlane))?.Phase);

        var recover = await cluster.Cli.RunAsync("recover");
        Assert.True(recover.ExitCode == 0, recover.ToString());
        Assert.Contains(recover.StdoutLines, l => l.StartsWith("Recovered 1 control-plane nodes.", StringComparison.Ordinal));
        await cluster.WaitForPhaseAsync(cluster.Instances, BootPhases.Booted);
    }
}
