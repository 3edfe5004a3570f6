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
}
