using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Asterism.Cloud;
using Asterism.EndToEnd.Tests.Infrastructure;
using Asterism.Protocol;
using Asterism.StateFs;
using Asterism.Tests;
using Xunit.Abstractions;

namespace Asterism.EndToEnd.Tests.NodeBoot;

/// <summary>1 control plane + 1 worker (simulated): the nodes keep their state as files on the state filesystem.</summary>
public sealed class StateFsCluster : ClusterFixture
{
    public override string Variant => "simulated";

    public override int ControlPlanes => 1;

    public override int Workers => 1;
}

/// <summary>
/// Issue 14 items 3 and 4 on real node processes: state survives reboots as files on the mounted ext4; power cuts
/// (`power crash`, SIGKILL of the node and with it its in-process FUSE server) while the workload writes lose no
/// acknowledged write and leave no mount, loop device or process behind; the decrypted filesystem passes
/// `e2fsck -fn`; `terminate` leaves nothing of the cluster in the mount table or the loop devices.
/// </summary>
public sealed class StateFilesystemTests(StateFsCluster cluster, ITestOutputHelper output) : IClassFixture<StateFsCluster>
{
    /// <summary>Acknowledged writes in the current cycle before the power is cut (0 = right after boot).</summary>
    private static readonly int[] CrashPoints = [0, 3, 12, 30, 60];

    private static readonly ConcurrentDictionary<string, string> Acknowledged = new(StringComparer.Ordinal);

    private static readonly ConcurrentDictionary<string, string> InFlight = new(StringComparer.Ordinal);

    private InstanceInfo Worker => cluster.WorkerNodes[0];

    private InstanceInfo ControlPlane => cluster.ControlPlaneNodes[0];

    [Fact]
    [Step(1)]
    public async Task Reboot_StateIsFilesOnTheMountedFilesystem_AndSurvives()
    {
        await cluster.EnsureAllBootedAsync();
        await cluster.WriteDataEverywhereAsync("before-reboot");
        foreach (var node in cluster.Instances)
        {
            var state = cluster.Files.NodeStateDir(node.Name);
            Assert.Contains(MountTable.Read(), m => m.MountPoint == state);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(state));
            Assert.Equal(cluster.Data[node.Name + "/before-reboot"], await File.ReadAllTextAsync(Path.Combine(state, "workload", "before-reboot")));
            Assert.True(File.Exists(Path.Combine(state, "asterism", "node_state.json")));
        }
        var secret = Path.Combine(cluster.Files.NodeStateDir(ControlPlane.Name), "asterism", "master_secret.json");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(secret));
        Assert.False(File.Exists(Path.Combine(cluster.Files.NodeStateDir(Worker.Name), "asterism", "master_secret.json")));

        // The worker rejoins through the control plane; the only control plane has nobody to rejoin through and
        // is recovered by the operator (RecoveryServer path).
        await cluster.Cli.RunOkAsync("power", "reboot", Worker.Name);
        await cluster.WaitForPhaseAsync([Worker], BootPhases.Booted);
        await cluster.Cli.RunOkAsync("power", "reboot", ControlPlane.Name);
        await cluster.WaitForPhaseAsync([ControlPlane], BootPhases.WaitingForKey);
        await cluster.Cli.RunOkAsync("recover");
        await cluster.WaitForPhaseAsync(cluster.Instances, BootPhases.Booted);
        await cluster.AssertDataIntactAsync();
        // A clean stop unmounts (the console keeps every boot; the last boot's lines come after the marker).
        Assert.All(cluster.Instances, n => Assert.Contains("\"msg\":\"Unmounted state filesystem\"", File.ReadAllText(cluster.Files.ConsoleLogPath(n.Name)), StringComparison.Ordinal));
    }

    [Fact]
    [Step(2)]
    public async Task PowerCut_WhileTheWorkloadWrites_EveryAcknowledgedWriteSurvives_NothingLeftBehind()
    {
        await cluster.EnsureAllBootedAsync();
        var total = Stopwatch.StartNew();
        for (var cycle = 0; cycle < CrashPoints.Length; cycle++)
        {
            var before = Acknowledged.Count;
            using var stop = new CancellationTokenSource();
            var writers = Enumerable.Range(0, 2).Select(w => WriteUntilFailureAsync($"c{cycle}-w{w}", stop.Token)).ToList();
            var target = before + CrashPoints[cycle];
            var (_, reached) = await Poll.UntilAsync(() => Task.FromResult(Acknowledged.Count), n => n >= target, Poll.Hang);
            Assert.True(reached, $"cycle {cycle}: the workload did not reach {CrashPoints[cycle]} acknowledged writes");

            await cluster.Cli.RunOkAsync("power", "crash", Worker.Name);
            var inFlightAtCrash = InFlight.Count;
            await stop.CancelAsync();
            await Task.WhenAll(writers);
            AssertNothingOfTheNodeLeft(Worker.Name, $"after crash {cycle}");

            await cluster.Cli.RunOkAsync("power", "start", Worker.Name);
            await cluster.WaitForPhaseAsync([Worker], BootPhases.Booted);
            await AssertAcknowledgedWritesAsync();
            output.WriteLine($"cycle {cycle}: crash after {Acknowledged.Count - before} acknowledged writes in this cycle ({CrashPoints[cycle]} asked), {inFlightAtCrash} in flight; {Acknowledged.Count} acknowledged in all, intact");
        }
        output.WriteLine($"{CrashPoints.Length} power cuts in {total.Elapsed.TotalSeconds:F1} s");
    }

    [Fact]
    [Step(3)]
    public async Task CleanStop_DecryptedFilesystem_E2fsckClean_AcknowledgedFilesPresent()
    {
        await cluster.EnsureAllBootedAsync();
        Assert.NotEmpty(Acknowledged);
        await cluster.Cli.RunOkAsync("power", "stop", Worker.Name);
        AssertNothingOfTheNodeLeft(Worker.Name, "after a clean stop");
        var raw = Path.Combine(cluster.Workspace, "worker-decrypted.ext4");
        try
        {
            await cluster.Cli.RunOkAsync("disk", "decrypt", cluster.Files.DiskPath(Worker.Name), "--master-secret", cluster.MasterSecretPath, "--out", raw);
            var fsck = await RunAsync("e2fsck", "-fn", raw);
            Assert.True(fsck.Code == 0, "e2fsck -fn on the decrypted state filesystem: " + fsck.Output);
            var listing = await RunAsync("debugfs", "-R", "ls -l /workload", raw);
            Assert.All(Acknowledged.Keys, k => Assert.Contains(k, listing.Output, StringComparison.Ordinal));
        }
        finally
        {
            File.Delete(raw);
        }
        await cluster.Cli.RunOkAsync("power", "start", Worker.Name);
        await cluster.WaitForPhaseAsync([Worker], BootPhases.Booted);
        await AssertAcknowledgedWritesAsync();
    }

    [Fact]
    [Step(99)]
    public async Task Terminate_NoMountLoopDeviceOrProcessOfTheClusterLeft()
    {
        // The worker's power is cut once more, so terminate also meets what a crash left (the provider cleans it).
        await cluster.Cli.RunOkAsync("power", "crash", Worker.Name);
        await cluster.Cli.RunOkAsync("terminate");
        var mounts = await RunAsync("findmnt", "-rn", "-o", "TARGET,SOURCE");
        Assert.DoesNotContain(cluster.Workspace, mounts.Output, StringComparison.Ordinal);
        // `losetup --list` reads the backing files from sysfs; `losetup -a` asks each device by ioctl, which blocks
        // forever on any loop device of this machine whose FUSE backing file no longer answers (another session's).
        var loops = await RunAsync("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE");
        Assert.Equal(0, loops.Code);
        Assert.DoesNotContain(cluster.Workspace, loops.Output, StringComparison.Ordinal);
        Assert.Empty(cluster.LiveProcesses());
    }

    /// <summary>PUTs fresh keys one after another until the node stops answering; records what was acknowledged.</summary>
    private async Task WriteUntilFailureAsync(string prefix, CancellationToken stop)
    {
        var authorization = cluster.Credential.AuthorizationValue;
        for (var i = 0; !stop.IsCancellationRequested; i++)
        {
            var key = $"{prefix}-{i}";
            var value = $"{key} {Guid.NewGuid():N}";
            InFlight[key] = value;
            try
            {
                using var response = await ClusterFixture.WorkloadAsync(Worker, HttpMethod.Put, $"/data/{key}", authorization, new StringContent(value));
                if (response.StatusCode != HttpStatusCode.NoContent)
                {
                    return;
                }
                Acknowledged[key] = value;
                InFlight.TryRemove(key, out _);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Every acknowledged write reads back exactly; one in flight at a crash is either absent or whole.</summary>
    private async Task AssertAcknowledgedWritesAsync()
    {
        foreach (var (key, value) in Acknowledged)
        {
            Assert.True(await cluster.GetAsync(Worker, key) == value, $"acknowledged write {key} lost or changed");
        }
        foreach (var (key, value) in InFlight)
        {
            var read = await cluster.GetAsync(Worker, key);
            Assert.True(read is null || read == value, $"unacknowledged write {key} is torn: {read}");
        }
    }

    /// <summary>No mount below the node directory, no loop device on its FUSE file, no process naming it.</summary>
    private void AssertNothingOfTheNodeLeft(string name, string when)
    {
        var nodeDir = cluster.Files.NodeDir(name);
        Assert.True(MountTable.Under(nodeDir).Count == 0, $"{when}: mounts left: {string.Join(", ", MountTable.Under(nodeDir).Select(m => m.MountPoint))}");
        var loops = MountTable.LoopDevicesAsync(CancellationToken.None).GetAwaiter().GetResult();
        Assert.DoesNotContain(loops, l => l.BackingFile.StartsWith(nodeDir, StringComparison.Ordinal));
        Assert.Empty(Processes.Matching(nodeDir));
    }

    private static async Task<(int Code, string Output)> RunAsync(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await stdout + await stderr);
    }
}
