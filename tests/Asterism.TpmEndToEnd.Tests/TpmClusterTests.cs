using System.Globalization;
using System.Text.Json.Nodes;
using Asterism.Crypto;
using Asterism.Tests;

namespace Asterism.TpmEndToEnd.Tests;

/// <summary>
/// Issue 8 acceptance on one real 3+1 `tpm` cluster (one swtpm per node, run by the local provider): the CLI as a
/// process from a private copy of the build, so the node binary the provider measures into PCR 4 can be swapped
/// for a tampered one (one byte appended) exactly as an attacker with disk access would.
/// Steps share the cluster; each assertion names its step.
/// </summary>
public sealed class TpmClusterTests : IAsyncLifetime
{
    private static readonly TimeSpan PhaseTimeout = TimeSpan.FromSeconds(90);

    private readonly HashSet<int> _swtpmPids = [];
    private string _bin = "";
    private string _workspace = "";
    private CliProcess _cli = null!;

    public Task InitializeAsync()
    {
        _bin = Directory.CreateTempSubdirectory("asterism-tpm-e2e-bin-").FullName;
        _workspace = Directory.CreateTempSubdirectory("asterism-tpm-e2e-").FullName;
        CopyDirectory(AppContext.BaseDirectory, _bin);
        _cli = new CliProcess(_bin, _workspace);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        try
        {
            await _cli.RunAsync("terminate", "--purge");
        }
        finally
        {
            foreach (var pid in ProcessesMentioning(_workspace).Concat(ProcessesMentioning(_bin)).Concat(_swtpmPids.Where(IsAlive)).Distinct())
            {
                Kill(pid);
            }
            Directory.Delete(_workspace, recursive: true);
            Directory.Delete(_bin, recursive: true);
        }
    }

    [Fact]
    public async Task TpmCluster_OutagesTamperedBinaryAndWrongSecret_RecoversAndRefusesWithIndex()
    {
        // 1. Create and init: the expected values written by create (= fetch-measurements) match what every swtpm quotes.
        var created = await _cli.RunOkAsync("create", "--control-planes", "3", "--workers", "1", "--variant", "tpm");
        Assert.Contains("(tpm attestation)", created.Stdout, StringComparison.Ordinal);
        await _cli.RunOkAsync("init", "--timeout", "10m");
        var nodes = await StatusAsync();
        Assert.Equal(4, nodes.Count);
        var cps = nodes.Where(n => n.Role == "control-plane").Select(n => n.Name).ToList();
        var worker = nodes.Single(n => n.Role == "worker").Name;
        await WaitForPhaseAsync(nodes.Select(n => n.Name), "booted", "1 init");
        RecordSwtpmPids(nodes.Select(n => n.Name));
        Assert.Equal(4, _swtpmPids.Count(IsAlive));
        var configBefore = await File.ReadAllTextAsync(Path.Combine(_workspace, "asterism-conf.yaml"));
        var fetched = await _cli.RunOkAsync("config", "fetch-measurements");
        Assert.Equal(configBefore, await File.ReadAllTextAsync(Path.Combine(_workspace, "asterism-conf.yaml")));
        Assert.Contains(" 4: ", fetched.Stdout, StringComparison.Ordinal);
        Assert.Contains($"15: {new string('0', 64)}", fetched.Stdout, StringComparison.Ordinal);

        // 2. Partial outage: a control-plane node and the worker crash and rejoin through the JoinService.
        await _cli.RunOkAsync("power", "crash", cps[1], worker);
        await _cli.RunOkAsync("power", "start", cps[1], worker);
        await WaitForPhaseAsync([cps[1], worker], "booted", "2 partial outage");
        RecordSwtpmPids([cps[1], worker]);

        // 3. The worker reboots from a tampered binary: PCR 4 differs. Join and rejoin attest both ends, so the PCR 4
        // mismatch is refused naming index 4 on whichever side checks first: the tampered worker no longer matches the
        // JoinService's boot PCRs (it expects its own), and the JoinService would refuse the worker's.
        var original = await File.ReadAllBytesAsync(_cli.NodeDll);
        ReplaceFile(_cli.NodeDll, [.. original, 0x00]);
        await _cli.RunOkAsync("power", "reboot", worker);
        await WaitForAsync(
            () => cps.Append(worker).Any(n => Console(n).Contains("\"reason\":\"MeasurementMismatch\"", StringComparison.Ordinal) && Console(n).Contains("at index 4", StringComparison.Ordinal)),
            "3 the tampered worker's PCR 4 mismatch to be refused with index 4");
        Assert.NotEqual("booted", (await StatusAsync()).Single(n => n.Name == worker).Phase);
        RecordSwtpmPids([worker]);

        // 4. Full outage while the binary stays tampered: `recover` refuses every control-plane node naming index 4.
        await _cli.RunOkAsync("power", "crash", "--all");
        await _cli.RunOkAsync("power", "start", "--all");
        await WaitForPhaseAsync(cps, "waiting-for-key", "4 full outage (tampered)");
        RecordSwtpmPids(cps);
        var refused = await _cli.RunAsync("recover", "--timeout", "10s");
        Assert.True(refused.ExitCode != 0, "4 recover must fail: " + refused);
        foreach (var cp in cps)
        {
            Assert.Contains($"Error: node {cp}", refused.Stderr, StringComparison.Ordinal);
        }
        Assert.Contains("attestation failed", refused.Stderr, StringComparison.Ordinal);
        Assert.Contains("at index 4", refused.Stderr, StringComparison.Ordinal);

        // 5. The genuine binary is back after a reboot; a wrong master secret is refused before any node is contacted, the right one recovers.
        ReplaceFile(_cli.NodeDll, original);
        await _cli.RunOkAsync("power", "reboot", "--all");
        await WaitForPhaseAsync(cps, "waiting-for-key", "5 reboot with the genuine binary");
        RecordSwtpmPids(nodes.Select(n => n.Name));
        var wrongSecret = Path.Combine(_workspace, "wrong-mastersecret.json");
        using (var wrong = MasterSecret.Generate())
        {
            wrong.Save(wrongSecret);
        }
        var wrongRun = await _cli.RunAsync("recover", "--master-secret", wrongSecret, "--timeout", "10s");
        Assert.True(wrongRun.ExitCode != 0, "5 recover with a wrong master secret must fail: " + wrongRun);
        // The node record is MAC'd with a key from the real master secret: a wrong secret is refused before any node.
        Assert.Contains("node record", wrongRun.Stderr, StringComparison.Ordinal);
        Assert.All(await StatusAsync(), n => Assert.NotEqual("booted", n.Role == "control-plane" ? n.Phase : "-"));
        await _cli.RunOkAsync("recover");
        await WaitForPhaseAsync(nodes.Select(n => n.Name), "booted", "5 recover (parallel)");

        // 6. Another full outage, recovered through the load balancer one node at a time (Constellation's mode).
        await _cli.RunOkAsync("power", "crash", "--all");
        await _cli.RunOkAsync("power", "start", "--all");
        await WaitForPhaseAsync(cps, "waiting-for-key", "6 full outage");
        RecordSwtpmPids(nodes.Select(n => n.Name));
        var loadBalancer = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(_workspace, ".asterism", "cloud", "cloud.json")))!["loadBalancer"]!.GetValue<string>();
        await _cli.RunOkAsync("recover", "--endpoint", loadBalancer, "--retry-interval", "1s");
        await WaitForPhaseAsync(nodes.Select(n => n.Name), "booted", "6 recover --endpoint");
        RecordSwtpmPids(nodes.Select(n => n.Name));

        // 7. Terminate: no node, provider or swtpm process is left (checked by PID).
        await _cli.RunOkAsync("terminate");
        Assert.DoesNotContain(_swtpmPids, IsAlive);
        Assert.Empty(ProcessesMentioning(_workspace));
    }

    private sealed record NodeView(string Name, string Role, string? Phase);

    private async Task<IReadOnlyList<NodeView>> StatusAsync()
    {
        var run = await _cli.RunOkAsync("status", "--json");
        var root = JsonNode.Parse(run.Stdout)!;
        return [.. root["nodes"]!.AsArray().Select(n => new NodeView(n!["name"]!.GetValue<string>(), n["role"]!.GetValue<string>(), n["phase"]?.GetValue<string>()))];
    }

    private async Task WaitForPhaseAsync(IEnumerable<string> names, string phase, string step)
    {
        var wanted = names.ToHashSet(StringComparer.Ordinal);
        IReadOnlyList<NodeView> last = [];
        await WaitForAsync(async () =>
        {
            last = await StatusAsync();
            return last.Where(n => wanted.Contains(n.Name)).All(n => n.Phase == phase);
        }, () => $"{step}: nodes to reach {phase}: {string.Join(", ", last.Select(n => $"{n.Name}={n.Phase}"))}"
            + string.Concat(last.Where(n => wanted.Contains(n.Name) && n.Phase != phase).Select(n => $"\nlast console lines of {n.Name}:\n{ConsoleTail(n.Name, 15)}")));
    }

    /// <summary>The end of a node's serial console, so a timeout says what the node was doing.</summary>
    private string ConsoleTail(string name, int lines) =>
        string.Join('\n', Console(name).Split('\n', StringSplitOptions.RemoveEmptyEntries).TakeLast(lines));

    private static Task WaitForAsync(Func<bool> condition, string what) =>
        WaitForAsync(() => Task.FromResult(condition()), () => what);

    private static async Task WaitForAsync(Func<Task<bool>> condition, Func<string> what)
    {
        if (!await Poll.UntilAsync(condition, PhaseTimeout, TimeSpan.FromMilliseconds(250)))
        {
            Assert.Fail($"timed out after {PhaseTimeout.TotalSeconds:0} s waiting for {what()}");
        }
    }

    private string InstanceDir(string name) => Path.Combine(_workspace, ".asterism", "cloud", "instances", name);

    private string Console(string name)
    {
        var path = Path.Combine(InstanceDir(name), "console.log");
        return File.Exists(path) ? File.ReadAllText(path) : "";
    }

    private void RecordSwtpmPids(IEnumerable<string> names)
    {
        foreach (var name in names)
        {
            var file = Path.Combine(InstanceDir(name), "tpm", "swtpm.pid");
            if (File.Exists(file) && int.TryParse(File.ReadAllText(file).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                _swtpmPids.Add(pid);
            }
        }
    }

    /// <summary>Replaces a file atomically (rename), as running processes keep the old inode.</summary>
    private static void ReplaceFile(string path, byte[] content)
    {
        var temp = path + ".new";
        File.WriteAllBytes(temp, content);
        File.Move(temp, path, overwrite: true);
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var dir in Directory.EnumerateDirectories(from, "*", SearchOption.AllDirectories))
        {
            Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, dir)));
        }
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            File.Copy(file, Path.Combine(to, Path.GetRelativePath(from, file)));
        }
    }

    private static bool IsAlive(int pid) => Directory.Exists($"/proc/{pid}") && !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z ", StringComparison.Ordinal);

    private static void Kill(int pid)
    {
        try
        {
            System.Diagnostics.Process.GetProcessById(pid).Kill();
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            // Gone already.
        }
    }

    /// <summary>Live processes whose command line mentions <paramref name="path"/> (found by scanning /proc).</summary>
    private static IReadOnlyList<int> ProcessesMentioning(string path)
    {
        var pids = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || pid == Environment.ProcessId)
            {
                continue;
            }
            try
            {
                if (File.ReadAllText(Path.Combine(dir, "cmdline")).Contains(path, StringComparison.Ordinal) && IsAlive(pid))
                {
                    pids.Add(pid);
                }
            }
            catch (IOException)
            {
                // Exited while scanning.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        return pids;
    }
}
