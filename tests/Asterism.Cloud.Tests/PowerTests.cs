using Asterism.Tests;
namespace Asterism.Cloud.Tests;

public class PowerTests
{
    [Fact]
    public async Task Reboot_ConsoleKeepsBothBootsStdoutAndStderr_NewMeasuredBoot()
    {
        await using var cloud = await TestCloud.StartAsync();
        var name = cloud.Cp(0);
        var first = cloud.Info(name);

        var result = await cloud.Provider!.PowerAsync(PowerAction.Reboot, [name], CancellationToken.None);
        Assert.Equal(new PowerResult { Name = name, Action = "reboot", Changed = true, Power = "running" }, Assert.Single(result.Results));
        await cloud.WaitForConsoleAsync(name, "listening", 2);

        var second = cloud.Info(name);
        Assert.NotEqual(first.Pid, second.Pid);
        Assert.False(Procs.IsAlive(first.Pid!.Value));
        Assert.Equal(first.Boots + 1, second.Boots);
        var console = cloud.Console(name);
        Assert.Equal(2, TestCloud.Count(console, "===== asterism-cloud: boot "));
        Assert.Equal(2, TestCloud.Count(console, $"test-instance {name} stderr line"));
        Assert.Equal(2, TestCloud.Count(console, $"test-instance {name} started"));
        Assert.Equal(1, TestCloud.Count(console, $"test-instance {name} received SIGTERM"));
        Assert.True(console.IndexOf("boot 1 of", StringComparison.Ordinal) < console.IndexOf("received SIGTERM", StringComparison.Ordinal));
        Assert.True(console.IndexOf("received SIGTERM", StringComparison.Ordinal) < console.IndexOf("boot 2 of", StringComparison.Ordinal));

        // The node saw exactly the events the provider computed for this spec.
        var events = MeasuredBoot.Read(cloud.Workspace.BootMeasurementsPath(name)).Events;
        Assert.Equal(MeasuredBoot.ComputeEvents(cloud.Spec), events);
        Assert.Contains(events[0].Digest, console, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StopStartCrash_ChangeStateAndProcess_CrashSendsNoSigterm()
    {
        await using var cloud = await TestCloud.StartAsync(controlPlanes: 1, workers: 1);
        var name = cloud.Worker(0);
        var other = cloud.Info(cloud.Cp(0));
        var pid1 = cloud.Info(name).Pid!.Value;

        var stop = Assert.Single((await cloud.Provider!.PowerAsync(PowerAction.Stop, [name], CancellationToken.None)).Results);
        Assert.Equal((true, "stopped"), (stop.Changed, stop.Power));
        Assert.Equal(("stopped", (int?)null), (cloud.Info(name).Power, cloud.Info(name).Pid));
        Assert.False(Procs.IsAlive(pid1));
        Assert.Equal(1, TestCloud.Count(cloud.Console(name), "received SIGTERM"));
        Assert.False((await cloud.Provider.PowerAsync(PowerAction.Stop, [name], CancellationToken.None)).Results[0].Changed);

        var start = Assert.Single((await cloud.Provider.PowerAsync(PowerAction.Start, [name], CancellationToken.None)).Results);
        Assert.Equal((true, "running"), (start.Changed, start.Power));
        await cloud.WaitForConsoleAsync(name, "listening", 2);
        var pid2 = cloud.Info(name).Pid!.Value;
        Assert.NotEqual(pid1, pid2);
        Assert.True(Procs.IsAlive(pid2));
        Assert.False((await cloud.Provider.PowerAsync(PowerAction.Start, [name], CancellationToken.None)).Results[0].Changed);

        var crash = Assert.Single((await cloud.Provider.PowerAsync(PowerAction.Crash, [name], CancellationToken.None)).Results);
        Assert.Equal((true, "stopped"), (crash.Changed, crash.Power));
        Assert.False(Procs.IsAlive(pid2));
        var console = cloud.Console(name);
        Assert.Equal(1, TestCloud.Count(console, "received SIGTERM"));
        Assert.Contains("(exit code 137)", console, StringComparison.Ordinal);

        // The other instance was never touched.
        Assert.Equal(other, cloud.Info(cloud.Cp(0)));
    }

    [Fact]
    public async Task Power_ConcurrentActionsOnOneInstance_StateMatchesTheProcesses()
    {
        await using var cloud = await TestCloud.StartAsync();
        var name = cloud.Cp(0);
        var actions = new[] { PowerAction.Reboot, PowerAction.Stop, PowerAction.Start, PowerAction.Crash, PowerAction.Start, PowerAction.Reboot, PowerAction.Stop, PowerAction.Start, PowerAction.Crash, PowerAction.Reboot };
        var results = await Task.WhenAll(actions.Select(a => Task.Run(() => cloud.Provider!.PowerAsync(a, [name], CancellationToken.None))));
        Assert.All(results, r => Assert.Null(Assert.Single(r.Results).Error));

        // Many boots were killed before the node printed anything; the provider's log has every PID it started.
        var info = cloud.Info(name);
        var bootedPids = cloud.Logs()
            .Select(l => System.Text.RegularExpressions.Regex.Match(l, $"^Instance started name={name} pid=(\\d+) "))
            .Where(m => m.Success)
            .Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture))
            .ToList();
        Assert.Equal(info.Boots, TestCloud.Count(cloud.Console(name), "===== asterism-cloud: boot "));
        Assert.Equal(info.Boots, bootedPids.Count);
        // The order of the concurrent actions is up to the scheduler: a start that finds the instance running
        // changes nothing, so only the first boot and the three reboots are certain.
        Assert.True(info.Boots >= 4, $"only {info.Boots} boots");
        foreach (var pid in bootedPids)
        {
            cloud.Track(pid);
        }
        var alive = bootedPids.Where(Procs.IsAlive).ToList();
        if (info.Power == "running")
        {
            Assert.Equal([info.Pid!.Value], alive);
        }
        else
        {
            Assert.Empty(alive);
        }
    }

    [Fact]
    public async Task NodeDiesOnItsOwn_ShownStopped_NotRestarted()
    {
        await using var cloud = await TestCloud.StartAsync();
        var name = cloud.Cp(0);
        var info = cloud.Info(name);

        Procs.Kill(info.Pid!.Value);
        await Poll.RequireAsync(() => cloud.Info(name).Power == "stopped", Poll.Hang, "the provider to notice the exit");
        await cloud.WaitForConsoleAsync(name, "stopped at", 1);

        Assert.Equal(info.Boots, cloud.Info(name).Boots);
        Assert.Equal(1, TestCloud.Count(cloud.Console(name), "===== asterism-cloud: boot "));
        using var metadata = cloud.NewMetadataClient();
        Assert.Equal("stopped", (await metadata.SelfAsync(name, CancellationToken.None)).Power);
    }

    [Fact]
    public async Task Stop_NodeIgnoresSigterm_KilledAfterGrace()
    {
        await using var cloud = await TestCloud.StartAsync(nodeArgs: ["--ignore-sigterm"], stopGrace: TimeSpan.FromMilliseconds(700));
        var name = cloud.Cp(0);
        var pid = cloud.Info(name).Pid!.Value;

        var started = DateTime.UtcNow;
        var stop = Assert.Single((await cloud.Provider!.PowerAsync(PowerAction.Stop, null, CancellationToken.None)).Results);
        var took = DateTime.UtcNow - started;

        Assert.Equal("stopped", stop.Power);
        Assert.False(Procs.IsAlive(pid));
        // The grace period is honoured (a lower bound cannot flake); no upper bound, which a loaded machine can break.
        Assert.True(took >= TimeSpan.FromMilliseconds(650), $"killed after {took}, before the 700 ms grace");
        Assert.Contains("ignoring SIGTERM", cloud.Console(name), StringComparison.Ordinal);
        Assert.Contains("(exit code 137)", cloud.Console(name), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reboot_NodeBinaryChanged_MeasurementsChange()
    {
        // A private copy of the test instance whose bytes the test may change (trailing bytes do not affect loading).
        var binDir = Directory.CreateTempSubdirectory("asterism-node-bin-").FullName;
        try
        {
            foreach (var f in new[] { "asterism-test-instance.dll", "asterism-test-instance.runtimeconfig.json" })
            {
                File.Copy(Path.Combine(AppContext.BaseDirectory, f), Path.Combine(binDir, f));
            }
            var dll = Path.Combine(binDir, "asterism-test-instance.dll");
            await using var cloud = TestCloud.Create(nodeCommand: [TestCloud.DotnetHost, dll]);
            await cloud.StartProviderAsync();
            var name = cloud.Cp(0);
            await cloud.WaitForConsoleAsync(name, "listening", 1);
            var before = MeasuredBoot.Read(cloud.Workspace.BootMeasurementsPath(name)).Events;

            await File.AppendAllTextAsync(dll, "tampered");
            await cloud.Provider!.PowerAsync(PowerAction.Reboot, [name], CancellationToken.None);
            await cloud.WaitForConsoleAsync(name, "listening", 2);
            var after = MeasuredBoot.Read(cloud.Workspace.BootMeasurementsPath(name)).Events;

            Assert.NotEqual(before[0].Digest, after[0].Digest);
            Assert.Equal(before[1], after[1]);
            Assert.Equal(MeasuredBoot.ComputeEvents(cloud.Spec), after);
            Assert.NotEqual(MeasuredBoot.ExpectedPcrs(before)[4], MeasuredBoot.ExpectedPcrs(after)[4]);
        }
        finally
        {
            Directory.Delete(binDir, true);
        }
    }
}
