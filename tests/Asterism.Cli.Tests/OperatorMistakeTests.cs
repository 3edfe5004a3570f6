using Asterism.Crypto;

namespace Asterism.Cli.Tests;

/// <summary>
/// Operator mistakes on a workspace, answered in-process without a running cluster: one clear line, exit 1 (a
/// failure) or 2 (usage), nothing lost. The workspace here holds the file names of a created cluster, which is all
/// these commands look at before they would talk to the provider.
/// </summary>
public sealed class OperatorMistakeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("asterism-cli-mistakes-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    /// <summary>A workspace with a cluster's files and instance directories (no provider runs).</summary>
    private string FakeCluster(params string[] nodes)
    {
        var workspace = Directory.CreateDirectory(PathOf("ws")).FullName;
        File.WriteAllText(Path.Combine(workspace, "asterism-conf.yaml"), "kept: config\n");
        File.WriteAllText(Path.Combine(workspace, "asterism-state.yaml"), "kept: state\n");
        foreach (var node in nodes)
        {
            Directory.CreateDirectory(Path.Combine(workspace, ".asterism", "cloud", "instances", node));
        }
        return workspace;
    }

    private static void AssertOneLine(int expectedCode, (int ExitCode, string Stdout, string Stderr) run, string expected)
    {
        Assert.True(run.ExitCode == expectedCode, $"exit {run.ExitCode}: {run.Stderr}");
        Assert.Equal("Error: " + expected, run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)[0]);
        Assert.DoesNotContain("   at ", run.Stderr);
        Assert.Empty(run.Stdout);
    }

    public static TheoryData<string[]> WorkspaceCommands => new()
    {
        new[] { "status" },
        new[] { "init" },
        new[] { "recover" },
        new[] { "power", "start", "--all" },
        new[] { "logs", "some-node" },
        new[] { "terminate" },
        new[] { "create" },
        new[] { "config", "fetch-measurements" },
    };

    [Theory]
    [MemberData(nameof(WorkspaceCommands))]
    public async Task Command_WorkspaceIsAFile_SaysSoAndLeavesItAlone(string[] command)
    {
        var file = PathOf("not-a-directory");
        File.WriteAllText(file, "precious");
        var run = await CliHarness.RunAsync([.. command, "-C", file]);
        AssertOneLine(1, run, $"workspace {file} is a file, not a directory; pass -C DIR with the workspace directory");
        Assert.Equal("precious", File.ReadAllText(file));
    }

    [Theory]
    [InlineData("power", "stop", "control-plane-9")]
    [InlineData("power", "crash", "worker-0", "control-plane-9")]
    [InlineData("logs", "control-plane-9")]
    [InlineData("logs", "../ws")]
    public async Task Command_UnknownNode_ListsTheKnownNames(params string[] command)
    {
        var workspace = FakeCluster("control-plane-0", "control-plane-1", "worker-0");
        var run = await CliHarness.RunAsync([.. command, "-C", workspace]);
        var name = command[^1];
        AssertOneLine(1, run, $"unknown node \"{name}\"; known nodes: control-plane-0, control-plane-1, worker-0");
    }

    [Fact]
    public async Task Recover_MasterSecretIsADirectory_SaysSo()
    {
        var workspace = FakeCluster();
        var directory = Directory.CreateDirectory(PathOf("secret-dir")).FullName;
        var run = await CliHarness.RunAsync("recover", "--master-secret", directory, "-C", workspace);
        AssertOneLine(1, run, $"master secret file \"{directory}\" is a directory, not a master secret file");
    }

    [Fact]
    public async Task Recover_RelativeMasterSecret_IsRelativeToTheCurrentDirectory()
    {
        var workspace = FakeCluster();
        // Relative to the current directory (the test host's), never to -C: the file exists only there.
        var relative = Path.Combine($"asterism-rel-{Guid.NewGuid():N}", "ms.json");
        var absolute = Path.GetFullPath(relative);
        Directory.CreateDirectory(Path.GetDirectoryName(absolute)!);
        try
        {
            File.WriteAllText(absolute, "{\"key\": \"not base64!\", \"salt\": 7}");
            File.SetUnixFileMode(absolute, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            var run = await CliHarness.RunAsync("recover", "--master-secret", relative, "-C", workspace);
            Assert.Equal(1, run.ExitCode);
            Assert.StartsWith($"Error: master secret file \"{absolute}\": ", run.Stderr);
            Assert.DoesNotContain("not base64", run.Stderr);
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(absolute)!, recursive: true);
        }

        // Without --master-secret the workspace's own file is meant.
        var byDefault = await CliHarness.RunAsync("recover", "-C", workspace);
        AssertOneLine(1, byDefault, $"master secret file \"{Path.Combine(workspace, MasterSecret.DefaultFileName)}\" does not exist");
    }

    [Theory]
    [InlineData("--timeout", "5x", "--timeout: \"5x\" is not a duration")]
    [InlineData("--retry-interval", "soon", "--retry-interval: \"soon\" is not a duration")]
    [InlineData("--endpoint", "10.0.0.1", "--endpoint 10.0.0.1: the host must be a loopback IP address")]
    public async Task Recover_BadOptionValue_UsageErrorBeforeAnyFileIsRead(string option, string value, string expected)
    {
        // The workspace does not even exist: the usage error must come first, not "workspace … does not exist".
        var run = await CliHarness.RunAsync("recover", option, value, "-C", PathOf("missing"));
        Assert.Equal(2, run.ExitCode);
        Assert.StartsWith("Error: " + expected, run.Stderr);
        Assert.Contains("Run 'asterism recover --help' for usage.", run.Stderr);
    }

    [Fact]
    public async Task Create_AfterTerminateKeptConfigAndSecret_RefusedNothingOverwritten()
    {
        var workspace = Directory.CreateDirectory(PathOf("terminated")).FullName;
        File.WriteAllText(Path.Combine(workspace, "asterism-conf.yaml"), "kept: config\n");
        using (var master = MasterSecret.Generate())
        {
            master.Save(Path.Combine(workspace, MasterSecret.DefaultFileName));
        }
        var secretBefore = File.ReadAllBytes(Path.Combine(workspace, MasterSecret.DefaultFileName));

        var run = await CliHarness.RunAsync("create", "-C", workspace);
        AssertOneLine(1, run, $"workspace {workspace} still holds asterism-conf.yaml and asterism-mastersecret.json of an earlier cluster; move them elsewhere to keep them, or use another -C DIR");
        Assert.Equal("kept: config\n", File.ReadAllText(Path.Combine(workspace, "asterism-conf.yaml")));
        Assert.Equal(secretBefore, File.ReadAllBytes(Path.Combine(workspace, MasterSecret.DefaultFileName)));
        Assert.Equal(2, Directory.EnumerateFileSystemEntries(workspace).Count());
    }
}
