using Asterism.Cloud;
using Asterism.EndToEnd.Tests.Infrastructure;
using Asterism.Protocol;
using Asterism.Tests;

namespace Asterism.EndToEnd.Tests.Operator;

/// <summary>One control-plane node, initialized; its provider is then killed without warning (SIGKILL).</summary>
public sealed class SmallSimulatedCluster : ClusterFixture
{
    public override string Variant => "simulated";

    public override int ControlPlanes => 1;

    public override int Workers => 0;
}

/// <summary>Commands while the local provider is down: a clear error naming the cause, and no change.</summary>
public sealed class ProviderDownTests(SmallSimulatedCluster cluster) : IClassFixture<SmallSimulatedCluster>
{
    [Fact]
    [Step(1)]
    public async Task Commands_ProviderKilled_ClearErrorNoChange()
    {
        await cluster.EnsureAllBootedAsync();
        var node = cluster.Instances[0];
        var nodePid = (await cluster.ListAsync())[0].Pid!.Value;
        var cloudJson = File.ReadAllText(cluster.Files.StatePath);
        using (var cloud = LocalCloudClient.Connect(cluster.Workspace))
        {
            Processes.Kill(cloud.State.Pid);
            Assert.True(await Poll.UntilAsync(() => !Processes.IsAlive(cloud.State.Pid), TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(50)));
        }

        string[][] needProvider =
        [
            ["status"],
            ["status", "--json"],
            ["power", "stop", "--all"],
            ["power", "crash", node.Name],
            ["recover"],
        ];
        foreach (var command in needProvider)
        {
            var result = await cluster.Cli.RunAsync(command);
            Assert.True(result.ExitCode == 1, result.ToString());
            Assert.Contains("the local provider of this workspace is not running", result.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
        }
        var create = await cluster.Cli.RunAsync("create");
        Assert.True(create.ExitCode == 1, create.ToString());
        Assert.Contains("already exists", create.Stderr, StringComparison.Ordinal);

        // The serial console stays readable: it is a file in the workspace.
        var logs = await cluster.Cli.RunOkAsync("logs", node.Name);
        Assert.Contains("Node booted", logs.Stdout, StringComparison.Ordinal);

        // Nothing changed: the node still runs the same process and answers; the provider's files are as they were.
        Assert.True(Processes.IsAlive(nodePid));
        Assert.Equal(BootPhases.Booted, (await cluster.StatusAsync(node))?.Phase);
        Assert.Equal(cloudJson, File.ReadAllText(cluster.Files.StatePath));
    }

    [Fact]
    [Step(99, AfterFailure = true)]
    public async Task Terminate_ProviderGone_StopsOrphanedNodes()
    {
        // The orphaned node and its etcd member (the control plane's data directory is in the workspace).
        Assert.Equal(2, cluster.LiveProcesses().Count);
        Assert.Single(cluster.LiveProcesses(), p => p.CommandLine.Contains("asterism-node.dll", StringComparison.Ordinal));
        var result = await cluster.Cli.RunOkAsync("terminate");
        Assert.Contains("Terminated.", result.Stdout, StringComparison.Ordinal);
        Assert.Empty(await Processes.WaitGoneAsync(cluster.Workspace, TimeSpan.FromSeconds(10)));
    }
}
