using Asterism.Tests;
namespace Asterism.Cloud.Tests;

/// <summary>The real `asterism-cloud` executable, launched detached the way the CLI does.</summary>
public class HostProcessTests
{
    [Fact]
    public async Task StartProviderAsync_DetachedProvider_ShutdownLeavesNoProcess()
    {
        await using var cloud = TestCloud.Create(controlPlanes: 2, workers: 1);
        var pids = new List<int>();
        try
        {
            using var client = await LocalCloudClient.StartProviderAsync(cloud.WorkspaceDir, new ProviderLaunchOptions { ExtraArgs = ["--health-interval", "200ms"] });
            pids.Add(client.State.Pid);
            Assert.NotEqual(Environment.ProcessId, client.State.Pid);
            Assert.Equal(client.State.Pid, Procs.SessionId(client.State.Pid));
            Assert.Equal(cloud.Spec.Subnet, client.State.Subnet);

            var instances = await client.ListAsync(CancellationToken.None);
            pids.AddRange(instances.Select(i => i.Pid!.Value));
            Assert.Equal(3, instances.Count);
            Assert.All(instances, i => Assert.True(Procs.IsAlive(i.Pid!.Value)));
            Assert.Equal($"{cloud.Spec.Subnet}.2", await client.LoadBalancerEndpointAsync(CancellationToken.None));

            var crash = await client.PowerAsync(PowerAction.Crash, [cloud.Cp(1)], CancellationToken.None);
            Assert.Equal("stopped", Assert.Single(crash.Results).Power);
            Assert.False(Procs.IsAlive(instances[1].Pid!.Value));

            using (var again = LocalCloudClient.TryConnect(cloud.WorkspaceDir, out var reason))
            {
                Assert.NotNull(again);
                Assert.Equal("", reason);
            }
            await Assert.ThrowsAsync<LocalCloudException>(() => LocalCloudClient.StartProviderAsync(cloud.WorkspaceDir));

            await client.ShutdownAsync(TimeSpan.FromSeconds(20), CancellationToken.None);
            Assert.All(pids, p => Assert.False(Procs.IsAlive(p), $"PID {p} survived shutdown"));
            Assert.False(File.Exists(cloud.Workspace.StatePath));
            Assert.Null(LocalCloudClient.TryConnect(cloud.WorkspaceDir, out var gone));
            Assert.Contains("provider not running", gone, StringComparison.Ordinal);
            Assert.Contains("Provider stopped", await File.ReadAllTextAsync(cloud.Workspace.LogPath), StringComparison.Ordinal);
        }
        finally
        {
            Procs.KillSurvivors(pids);
        }
    }

    [Fact]
    public async Task Sigterm_ProviderStopsEveryInstanceAndExits()
    {
        await using var cloud = TestCloud.Create(controlPlanes: 1, workers: 1);
        var pids = new List<int>();
        try
        {
            using var client = await LocalCloudClient.StartProviderAsync(cloud.WorkspaceDir);
            pids.Add(client.State.Pid);
            pids.AddRange((await client.ListAsync(CancellationToken.None)).Select(i => i.Pid!.Value));
            foreach (var name in new[] { cloud.Cp(0), cloud.Worker(0) })
            {
                await cloud.WaitForConsoleAsync(name, "listening", 1);
            }

            Procs.Term(client.State.Pid);
            await Poll.RequireAsync(() => !pids.Any(Procs.IsAlive), Poll.Hang, "provider and instances to exit");
            Assert.Contains("received SIGTERM", cloud.Console(cloud.Cp(0)), StringComparison.Ordinal);
            Assert.Contains("received SIGTERM", cloud.Console(cloud.Worker(0)), StringComparison.Ordinal);
            Assert.Null(LocalCloudClient.TryConnect(cloud.WorkspaceDir));
        }
        finally
        {
            Procs.KillSurvivors(pids);
        }
    }

    [Fact]
    public async Task StartProviderAsync_AfterProviderWasKilled_StaleInstancesKilledFreshOnesStart()
    {
        await using var cloud = TestCloud.Create(controlPlanes: 1);
        var pids = new List<int>();
        try
        {
            using (var first = await LocalCloudClient.StartProviderAsync(cloud.WorkspaceDir))
            {
                pids.Add(first.State.Pid);
                pids.AddRange((await first.ListAsync(CancellationToken.None)).Select(i => i.Pid!.Value));
                Procs.Kill(first.State.Pid);
                await Poll.RequireAsync(() => !Procs.IsAlive(first.State.Pid), Poll.Hang, "the provider to die");
            }
            Assert.True(Procs.IsAlive(pids[1]), "the orphaned node should still run before the restart");

            using var second = await LocalCloudClient.StartProviderAsync(cloud.WorkspaceDir);
            pids.Add(second.State.Pid);
            var fresh = Assert.Single(await second.ListAsync(CancellationToken.None));
            pids.Add(fresh.Pid!.Value);
            Assert.False(Procs.IsAlive(pids[1]), "the orphan from the killed provider must be gone");
            Assert.Equal("running", fresh.Power);
            Assert.Contains("Killed an instance left running", await File.ReadAllTextAsync(cloud.Workspace.LogPath), StringComparison.Ordinal);
            await second.ShutdownAsync(TimeSpan.FromSeconds(20), CancellationToken.None);
        }
        finally
        {
            Procs.KillSurvivors(pids);
        }
    }

    [Fact]
    public async Task StartProviderAsync_ProviderCannotStart_ReportsExitAndLog()
    {
        await using var cloud = TestCloud.Create(nodeCommand: ["dotnet", "/no/such/asterism-node.dll"]);
        var e = await Assert.ThrowsAsync<LocalCloudException>(() => LocalCloudClient.StartProviderAsync(cloud.WorkspaceDir));
        Assert.Contains("exited with code 1", e.Message, StringComparison.Ordinal);
        Assert.Contains("cannot measure node binary", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TryConnect_StaleCloudJson_ProviderNotRunning()
    {
        var dir = Directory.CreateTempSubdirectory("asterism-stale-").FullName;
        try
        {
            var ws = new CloudWorkspace(dir);
            Assert.Null(LocalCloudClient.TryConnect(dir, out var none));
            Assert.Contains("provider not running", none, StringComparison.Ordinal);

            Directory.CreateDirectory(ws.CloudDir);
            // PID of this test process: alive, but not an asterism-cloud process (a recycled PID).
            File.WriteAllText(ws.StatePath, $"{{\"version\":1,\"pid\":{Environment.ProcessId},\"metadataUrl\":\"http://127.99.0.1:8080\"}}");
            Assert.Null(LocalCloudClient.TryConnect(dir, out var recycled));
            Assert.Contains("provider not running", recycled, StringComparison.Ordinal);
            File.WriteAllText(ws.StatePath, "not json");
            Assert.Null(LocalCloudClient.TryConnect(dir, out var garbage));
            Assert.Contains("provider not running", garbage, StringComparison.Ordinal);
            var e = Assert.Throws<LocalCloudException>(() => LocalCloudClient.Connect(dir));
            Assert.Contains("provider not running", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
