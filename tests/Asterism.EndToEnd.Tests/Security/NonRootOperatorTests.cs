using Asterism.Cloud;
using Asterism.EndToEnd.Tests.Infrastructure;
using Asterism.Tests;
using StateFs = Asterism.StateFs;

namespace Asterism.EndToEnd.Tests.Security;

/// <summary>
/// The CLI run by an ordinary user on a workspace of its own: the real `asterism` executable (so its umask 077
/// applies) as nobody creates, initializes, shows and terminates a one-node cluster, and leaves nothing open.
/// </summary>
public sealed class NonRootOperatorTests
{
    [RootFact]
    public async Task Cli_AsNonRootUser_CreateInitStatusTerminateWork()
    {
        var home = Directory.CreateTempSubdirectory("asterism-nonroot-").FullName;
        var workspace = Path.Combine(home, "ws");
        var cli = Path.Combine(AppContext.BaseDirectory, "asterism.dll");
        var dotnet = Environment.ProcessPath is { } p && Path.GetFileName(p) == "dotnet" ? p : "dotnet";
        // nobody owns its home; the temp parent of the test stays root's, traversable as /tmp is.
        File.SetUnixFileMode(home, OwnerOnly.DirectoryMode);
        Chown(home);
        var environment = new Dictionary<string, string> { ["HOME"] = home, ["DOTNET_CLI_HOME"] = home, ["DOTNET_NOLOGO"] = "1" };
        async Task<OtherUser.Result> Asterism(params string[] args) =>
            await OtherUser.RunAsync([dotnet, cli, .. args, "-C", workspace], environment, TimeSpan.FromMinutes(4));
        try
        {
            var created = await Asterism("create", "--control-planes", "1", "--workers", "0");
            Assert.True(created.ExitCode == 0, "create as nobody: " + created);
            var initialized = await Asterism("init");
            Assert.True(initialized.ExitCode == 0, "init as nobody: " + initialized);
            var status = await Asterism("status");
            Assert.True(status.ExitCode == 0, "status as nobody: " + status);
            Assert.Contains("booted", status.Stdout, StringComparison.Ordinal);

            // The node runs as nobody: its state filesystem is fuse2fs on our FUSE block file. A power cut kills the
            // node; the provider kills its fuse2fs and removes both mounts, and the node comes back with recover.
            Assert.Contains(Processes.Matching(workspace), p => p.CommandLine.StartsWith("fuse2fs ", StringComparison.Ordinal));
            Assert.NotEmpty(StateFs.MountTable.Under(workspace));
            var crashed = await Asterism("power", "crash", "--all");
            Assert.True(crashed.ExitCode == 0, "power crash as nobody: " + crashed);
            Assert.DoesNotContain(Processes.Matching(workspace), p => p.CommandLine.StartsWith("fuse2fs ", StringComparison.Ordinal) || p.CommandLine.Contains(" --node-dir ", StringComparison.Ordinal));
            Assert.Empty(StateFs.MountTable.Under(workspace));
            Assert.True((await Asterism("power", "start", "--all")).ExitCode == 0);
            var recovered = await Asterism("recover");
            Assert.True(recovered.ExitCode == 0, "recover as nobody: " + recovered);
            // recover returns once the key is pushed; the node then mounts and starts its services.
            await Poll.RequireAsync(async () => (await Asterism("status")).Stdout.Contains("booted", StringComparison.Ordinal), Poll.Hang, "the node booted after recover");
            Assert.NotEmpty(StateFs.MountTable.Under(workspace));

            // Everything the real executables created with their umask is the owner's alone.
            Assert.Empty(FileModes.OpenToOthers(workspace));
            var processes = Processes.Matching(workspace);
            Assert.NotEmpty(processes);
            Assert.All(processes, proc => Assert.Equal(65534, Uid(proc.Pid)));

            var terminated = await Asterism("terminate", "--purge");
            Assert.True(terminated.ExitCode == 0, "terminate as nobody: " + terminated);
            Assert.Empty(Processes.Matching(workspace));
        }
        finally
        {
            foreach (var proc in Processes.Matching(workspace))
            {
                Processes.Kill(proc.Pid);
            }
            await Processes.WaitGoneAsync(workspace, TimeSpan.FromSeconds(10));
            // A failed step may leave the node's mounts: never let the recursive delete walk into them.
            if (Directory.Exists(workspace))
            {
                await NodeMounts.CleanAllAsync(new CloudWorkspace(workspace), CancellationToken.None);
            }
            Directory.Delete(home, recursive: true);
        }
    }

    private static void Chown(string path)
    {
        using var chown = System.Diagnostics.Process.Start("chown", ["nobody:nogroup", path]);
        chown.WaitForExit();
        Assert.Equal(0, chown.ExitCode);
    }

    private static int Uid(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal));
        return int.Parse(line.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
    }
}
