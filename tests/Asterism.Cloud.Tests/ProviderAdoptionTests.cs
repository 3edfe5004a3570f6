using System.Diagnostics;
using Asterism.Tests;

namespace Asterism.Cloud.Tests;

/// <summary>
/// A provider killed with SIGKILL leaves its nodes running; `asterism-cloud --adopt` (what `asterism provider start`
/// runs) takes over exactly those processes and never a PID that now names another process.
/// </summary>
public class ProviderAdoptionTests
{
    [Fact]
    public async Task StartAdopting_AfterKill9_AdoptsRunningNodesOthersStayStopped()
    {
        await using var cloud = TestCloud.Create(controlPlanes: 2);
        var pids = new List<int>();
        try
        {
            int runningPid;
            using (var first = await LocalCloudClient.StartProviderAsync(cloud.WorkspaceDir))
            {
                pids.Add(first.State.Pid);
                var instances = await first.ListAsync(CancellationToken.None);
                pids.AddRange(instances.Select(i => i.Pid!.Value));
                runningPid = instances[0].Pid!.Value;
                await cloud.WaitForConsoleAsync(cloud.Cp(0), "listening", 1);
                await first.PowerAsync(PowerAction.Crash, [cloud.Cp(1)], CancellationToken.None);
                Procs.Kill(first.State.Pid);
                await Poll.RequireAsync(() => !Procs.IsAlive(first.State.Pid), Poll.Hang, "the provider to die");
            }

            using var second = await LocalCloudClient.StartProviderAsync(cloud.WorkspaceDir, new ProviderLaunchOptions { ExtraArgs = ["--adopt"] });
            pids.Add(second.State.Pid);
            var after = await second.ListAsync(CancellationToken.None);
            Assert.Equal(("running", (int?)runningPid), (after[0].Power, after[0].Pid));
            Assert.Equal(("stopped", (int?)null), (after[1].Power, after[1].Pid));
            Assert.Contains("Adopted an instance left running", await File.ReadAllTextAsync(cloud.Workspace.LogPath), StringComparison.Ordinal);
            Assert.Equal(1, TestCloud.Count(cloud.Console(cloud.Cp(0)), "test-instance " + cloud.Cp(0) + " started"));

            // The adopted node is this provider's now: a stop reaches it (SIGTERM first) and is noticed.
            var stop = await second.PowerAsync(PowerAction.Stop, [cloud.Cp(0)], CancellationToken.None);
            Assert.Equal("stopped", Assert.Single(stop.Results).Power);
            Assert.False(Procs.IsAlive(runningPid));
            Assert.Contains("received SIGTERM", cloud.Console(cloud.Cp(0)), StringComparison.Ordinal);
            var start = await second.PowerAsync(PowerAction.Start, null, CancellationToken.None);
            Assert.All(start.Results, r => Assert.Equal("running", r.Power));
            pids.AddRange((await second.ListAsync(CancellationToken.None)).Select(i => i.Pid!.Value));

            await second.ShutdownAsync(TimeSpan.FromSeconds(20), CancellationToken.None);
            Assert.All(pids, p => Assert.False(Procs.IsAlive(p), $"PID {p} survived shutdown"));
        }
        finally
        {
            Procs.KillSurvivors(pids);
        }
    }

    [Fact]
    public async Task StartAdopting_PidFileNamesAnotherProcess_NeitherAdoptedNorKilled()
    {
        await using var cloud = TestCloud.Create(controlPlanes: 1);
        var pids = new List<int>();
        using var stranger = Process.Start(new ProcessStartInfo("sleep", "600") { UseShellExecute = false })!;
        try
        {
            using (var first = await LocalCloudClient.StartProviderAsync(cloud.WorkspaceDir))
            {
                pids.Add(first.State.Pid);
                pids.AddRange((await first.ListAsync(CancellationToken.None)).Select(i => i.Pid!.Value));
                Procs.Kill(first.State.Pid);
                await Poll.RequireAsync(() => !Procs.IsAlive(first.State.Pid), Poll.Hang, "the provider to die");
            }
            var pidFile = Path.Combine(cloud.Workspace.InstanceDir(cloud.Cp(0)), "node.pid");
            var node = ProcessIdentity.ReadPidFile(pidFile, out _)!.Value;
            // The node's PID with another start time (as if the PID had been reused), then a live stranger's PID.
            foreach (var line in new[] { $"{node.Pid} {node.StartTicks + 1} 1\n", $"{stranger.Id}\n" })
            {
                File.WriteAllText(pidFile, line);
                using var again = await LocalCloudClient.StartProviderAsync(cloud.WorkspaceDir, new ProviderLaunchOptions { ExtraArgs = ["--adopt"] });
                pids.Add(again.State.Pid);
                Assert.Equal("stopped", Assert.Single(await again.ListAsync(CancellationToken.None)).Power);
                await again.ShutdownAsync(TimeSpan.FromSeconds(20), CancellationToken.None);
            }
            Assert.True(node.IsRunning, "a process whose start time does not match was killed");
            Assert.False(stranger.HasExited, "an unrelated process named by a PID file was killed");
        }
        finally
        {
            stranger.Kill();
            Procs.KillSurvivors(pids);
        }
    }

    [Fact]
    public void Signal_StartTimeDoesNotMatch_Refused()
    {
        using var sleeper = Process.Start(new ProcessStartInfo("sleep", "600") { UseShellExecute = false })!;
        try
        {
            var real = ProcessIdentity.Of(sleeper.Id)!.Value;
            var reused = real with { StartTicks = real.StartTicks + 1 };
            Assert.False(reused.IsRunning);
            Assert.False(reused.Signal(ProcessIdentity.SigKill));
            Assert.True(real.IsRunning);
            Assert.True(real.Signal(ProcessIdentity.SigKill));
            Assert.True(sleeper.WaitForExit(TimeSpan.FromSeconds(10)));
            Assert.False(real.Signal(ProcessIdentity.SigKill));
        }
        finally
        {
            if (!sleeper.HasExited)
            {
                sleeper.Kill();
            }
        }
    }

    [Fact]
    public void ReadPidFile_MalformedOrOversized_Null()
    {
        var dir = Directory.CreateTempSubdirectory("asterism-pidfile-").FullName;
        try
        {
            var path = Path.Combine(dir, "node.pid");
            foreach (var text in new[] { "", "abc", "-1", $"{Environment.ProcessId} x", new string('9', 100_000) })
            {
                File.WriteAllText(path, text);
                Assert.Null(ProcessIdentity.ReadPidFile(path, out _));
            }
            File.WriteAllText(path, ProcessIdentity.Of(Environment.ProcessId)!.Value.ToPidFileLine("7"));
            Assert.Equal(Environment.ProcessId, ProcessIdentity.ReadPidFile(path, out var extra)?.Pid);
            Assert.Equal("7", extra);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
