using Asterism.EndToEnd.Tests.Infrastructure;

namespace Asterism.EndToEnd.Tests.Operator;

/// <summary>Commands on a workspace that does not exist or holds no cluster: a clear error, nothing created.</summary>
public sealed class WorkspaceInputTests : IDisposable
{
    private readonly string _parent = Directory.CreateTempSubdirectory("asterism-e2e-input-").FullName;

    public static TheoryData<string[]> ClusterCommands => new()
    {
        new[] { "status" },
        new[] { "status", "--json" },
        new[] { "init" },
        new[] { "recover" },
        new[] { "recover", "--endpoint", "127.0.0.1" },
        new[] { "power", "start", "--all" },
        new[] { "logs", "some-node" },
        new[] { "terminate" },
    };

    [Theory]
    [MemberData(nameof(ClusterCommands))]
    public async Task Command_MissingWorkspace_ErrorNamesItAndCreatesNothing(string[] command)
    {
        var missing = Path.Combine(_parent, "no-such-workspace");
        var result = await CliDriver.RunRawAsync([.. command, "-C", missing]);
        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.Contains($"workspace {missing} does not exist", result.Stderr, StringComparison.Ordinal);
        Assert.Empty(result.Stdout);
        Assert.False(Directory.Exists(missing), "a command on a missing workspace created it");
    }

    [Theory]
    [MemberData(nameof(ClusterCommands))]
    public async Task Command_EmptyWorkspace_ErrorSaysNoClusterAndWritesNothing(string[] command)
    {
        var empty = Directory.CreateDirectory(Path.Combine(_parent, "empty")).FullName;
        var result = await CliDriver.RunRawAsync([.. command, "-C", empty]);
        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.Contains("no cluster in workspace", result.Stderr, StringComparison.Ordinal);
        Assert.Empty(Directory.EnumerateFileSystemEntries(empty));
    }

    public void Dispose() => Directory.Delete(_parent, recursive: true);
}
