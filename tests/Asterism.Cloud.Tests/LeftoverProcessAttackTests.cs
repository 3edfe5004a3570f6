using System.Diagnostics;
using Asterism.Cloud.Local;
using Asterism.Tests;

namespace Asterism.Cloud.Tests;

/// <summary>
/// The attacker (another local user, here `nobody` via setpriv) starts processes whose command lines imitate a node's
/// or an swtpm's of the operator's workspace — the paths are no secret. `terminate` (which runs as root here, as it
/// may on a real host) must not count them as the cluster's nor kill them, and a restarted provider must not adopt one
/// as a node's TPM when its PID lands in swtpm.pid (a bare PID, so a reused PID passes the file's own check).
/// </summary>
public sealed class LeftoverProcessAttackTests : IDisposable
{
    private readonly string _workspaceDir = Directory.CreateTempSubdirectory("asterism-leftover-").FullName;
    private readonly List<Process> _processes = [];

    [Fact]
    public async Task Kill_AnotherUsersProcessNamingTheInstancesDirectory_NotFoundNotKilled()
    {
        Assert.True(Environment.UserName == "root", "this test switches to the user nobody with setpriv and needs root");
        var workspace = Workspace();
        var nodeDir = workspace.NodeDir("cp-0");
        var tpmDir = Path.Combine(workspace.InstanceDir("cp-0"), SwtpmFirmware.TpmDirectoryName);
        var imitatedNode = StartAsNobody("--node-dir", nodeDir);
        var imitatedTpm = StartAsNobody("--server", "type=unixio,path=/tmp/evil.sock", "--tpmstate", $"dir={tpmDir},mode=0600");
        // Controls: the operator's own process of the same shape is found; its own `tail -f` of a console log is not.
        var ownNode = Start("/bin/sh", "-c", Loop, "node", "--node-dir", nodeDir);
        var ownTail = Start("tail", "-f", workspace.ConsoleLogPath("cp-0"));
        // Until setpriv has exec'd, the imitation still runs as root under setpriv's own command line (which names the
        // directory too): wait for the shell, which runs as nobody.
        await Poll.RequireAsync(() => Execd(imitatedNode) && CommandLineOf(imitatedNode).Contains(nodeDir, StringComparison.Ordinal)
            && Execd(imitatedTpm) && CommandLineOf(imitatedTpm).Contains(tpmDir, StringComparison.Ordinal)
            && CommandLineOf(ownNode).Contains(nodeDir, StringComparison.Ordinal), Poll.Hang, "the processes to exec");

        var found = LeftoverProcesses.Find(workspace).Select(f => f.Process.Pid).ToList();
        Assert.Contains(ownNode.Id, found);
        Assert.DoesNotContain(imitatedNode.Id, found);
        Assert.DoesNotContain(imitatedTpm.Id, found);
        Assert.DoesNotContain(ownTail.Id, found);

        var killed = await LeftoverProcesses.KillAsync(workspace, TimeSpan.FromSeconds(10), CancellationToken.None);
        Assert.Equal([ownNode.Id], killed.Select(k => k.Process.Pid));
        Assert.False(imitatedNode.HasExited, "terminate killed another user's process that imitates a node");
        Assert.False(imitatedTpm.HasExited, "terminate killed another user's process that imitates an swtpm");
        Assert.False(ownTail.HasExited, "terminate killed the operator's tail of a console log");
    }

    [Fact]
    public async Task FindStale_SwtpmPidReusedByAnotherUsersImitation_NotAdopted()
    {
        Assert.True(Environment.UserName == "root", "this test switches to the user nobody with setpriv and needs root");
        var workspace = Workspace();
        var tpmDir = Path.Combine(workspace.InstanceDir("cp-0"), SwtpmFirmware.TpmDirectoryName);
        OwnerOnly.CreateDirectory(tpmDir);
        var imitation = StartAsNobody("--server", "type=unixio,path=/tmp/evil.sock", "--tpmstate", $"dir={tpmDir},mode=0600");
        var own = Start("/bin/sh", "-c", Loop, "swtpm", "--server", "type=unixio,path=/tmp/own.sock", "--tpmstate", $"dir={tpmDir},mode=0600");
        await Poll.RequireAsync(() => Execd(imitation) && CommandLineOf(imitation).Contains(tpmDir, StringComparison.Ordinal) && CommandLineOf(own).Contains(tpmDir, StringComparison.Ordinal),
            Poll.Hang, "the processes to exec");

        // swtpm writes its own bare PID: a PID reused by the attacker's imitation would pass the file's check.
        File.WriteAllText(Path.Combine(tpmDir, "swtpm.pid"), $"{imitation.Id}\n");
        Assert.Null(SwtpmFirmware.FindStale(tpmDir));
        // Control: the same file naming the operator's own process of that shape is taken (socket from its command line).
        File.WriteAllText(Path.Combine(tpmDir, "swtpm.pid"), $"{own.Id}\n");
        Assert.Equal("/tmp/own.sock", SwtpmFirmware.FindStale(tpmDir)?.Socket);
    }

    [Fact]
    public async Task Of_AnotherUsersProcess_Null()
    {
        Assert.True(Environment.UserName == "root", "this test switches to the user nobody with setpriv and needs root");
        var other = StartAsNobody();
        var own = Start("sleep", "600");
        await Poll.RequireAsync(() => CommandLineOf(other).StartsWith("/bin/sh", StringComparison.Ordinal), Poll.Hang, "setpriv to exec");
        Assert.Null(ProcessIdentity.Of(other.Id));
        Assert.NotNull(ProcessIdentity.Of(own.Id));
    }

    public void Dispose()
    {
        foreach (var p in _processes)
        {
            if (!p.HasExited)
            {
                p.Kill(entireProcessTree: true);
            }
            p.Dispose();
        }
        Directory.Delete(_workspaceDir, recursive: true);
    }

    private CloudWorkspace Workspace()
    {
        var workspace = new CloudWorkspace(_workspaceDir);
        workspace.EnsurePrivateDirectories();
        OwnerOnly.CreateDirectory(workspace.NodeDir("cp-0"));
        File.WriteAllText(workspace.ConsoleLogPath("cp-0"), "");
        return workspace;
    }

    // A shell that stays (its sleeps last a second each, so none outlives it for long): its command line is the one we gave.
    private const string Loop = "while :; do sleep 1; done";

    private Process StartAsNobody(params string[] imitated) =>
        Start(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/bin/sh", "-c", Loop, "attacker", .. imitated]);

    private Process Start(params string[] argv)
    {
        var psi = new ProcessStartInfo(argv[0]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in argv.Skip(1))
        {
            psi.ArgumentList.Add(a);
        }
        var process = Process.Start(psi)!;
        _processes.Add(process);
        return process;
    }

    /// <summary>Whether setpriv has exec'd the shell (and so dropped to nobody).</summary>
    private static bool Execd(Process asNobody) => CommandLineOf(asNobody).StartsWith("/bin/sh", StringComparison.Ordinal);

    private static string CommandLineOf(Process process)
    {
        try
        {
            return File.ReadAllText($"/proc/{process.Id}/cmdline").Replace('\0', ' ');
        }
        catch (IOException)
        {
            return "";
        }
    }
}
