namespace Asterism.Cli.Tests;

public class RootCommandTests
{
    [Fact]
    public async Task Help_ListsCommandsAndGlobalOptions()
    {
        var (code, stdout, _) = await CliHarness.RunAsync("--help");
        Assert.Equal(0, code);
        Assert.Contains("version", stdout);
        Assert.Contains("--workspace", stdout);
        Assert.Contains("-C", stdout);
        Assert.Contains("--debug", stdout);
    }

    [Fact]
    public async Task Version_PrintsVersion()
    {
        var (code, stdout, _) = await CliHarness.RunAsync("version");
        Assert.Equal(0, code);
        Assert.Matches(@"^asterism \d+\.\d+\.\d+", stdout);
    }

    [Theory]
    [InlineData("bogus")]
    [InlineData("--nope")]
    [InlineData("version", "--extra")]
    [InlineData("-C")]
    public async Task BadUsage_ExitCode2WithHint(params string[] args)
    {
        var (code, stdout, stderr) = await CliHarness.RunAsync(args);
        Assert.Equal(2, code);
        Assert.Contains("Error:", stderr);
        Assert.Contains("--help", stderr);
        Assert.Empty(stdout);
    }

    [Fact]
    public async Task GlobalOptions_AcceptedAfterSubcommand()
    {
        var (code, _, _) = await CliHarness.RunAsync("version", "--debug", "-C", "/tmp");
        Assert.Equal(0, code);
    }

    [Theory]
    [InlineData("Error: unknown command 'recovr'; did you mean 'recover'?", "recovr")]
    [InlineData("Error: unknown command 'powr'; did you mean 'power'?", "powr", "start", "--all")]
    [InlineData("Error: unknown command 'stauts'; did you mean 'status'?", "stauts")]
    [InlineData("Error: unknown command 'inspec'; did you mean 'inspect'?", "disk", "inspec", "x.img")]
    [InlineData("Error: unknown command 'reco'; did you mean 'recover'?", "reco")]
    [InlineData("Error: unknown option '--master-secrt'; did you mean '--master-secret'?", "recover", "--master-secrt", "x")]
    [InlineData("Error: unknown command 'frobnicate'; commands: version, demo, create, init, status, node, audit, recover, secret, power, logs, provider, terminate, config, disk, tpm", "frobnicate")]
    public async Task Typo_FirstLineSuggestsTheNearestName(string firstLine, params string[] args)
    {
        var (code, stdout, stderr) = await CliHarness.RunAsync(args);
        Assert.Equal(2, code);
        Assert.Empty(stdout);
        Assert.Equal(firstLine, stderr.Split('\n')[0]);
        Assert.DoesNotContain("Required command was not provided", stderr);
    }

    [Fact]
    public async Task GroupWithoutCommand_NamesItsCommands()
    {
        var (code, _, stderr) = await CliHarness.RunAsync("disk");
        Assert.Equal(2, code);
        Assert.Equal("Error: a command is missing; commands: format, inspect, test-key, extract, decrypt, mount", stderr.Split('\n')[0]);
    }
}
