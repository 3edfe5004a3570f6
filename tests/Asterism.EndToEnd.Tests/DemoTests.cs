using Asterism.EndToEnd.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Asterism.EndToEnd.Tests;

/// <summary>
/// `asterism demo`, the README's first command: the whole story, exit 0, no process left. No time limit here (a
/// functional test on shared cores must not fail on speed): the demo prints its duration, and `macro recover` measures.
/// </summary>
public sealed class DemoTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Demo_WholeStory_Exit0_NoProcessLeft()
    {
        // The demo's provider and nodes run this build's asterism-cloud.dll and asterism-node.dll on a fresh
        // asterism-demo-* workspace.
        var ours = AppContext.BaseDirectory;
        var before = Processes.Matching(ours).Where(p => p.CommandLine.Contains("asterism-demo-", StringComparison.Ordinal)).Select(p => p.Pid).ToHashSet();
        var result = await CliDriver.RunRawAsync("demo");
        output.WriteLine(result.ToString());
        Assert.True(result.ExitCode == 0, result.ToString());
        foreach (var step in Enumerable.Range(1, 5))
        {
            Assert.Contains($"==> Step {step} ", result.Stdout, StringComparison.Ordinal);
        }
        Assert.Contains("Failed to rejoin on all endpoints", result.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"\n\s+Recovered [1-3] control-plane nodes\.\n", result.Stdout);
        Assert.Contains("Every node's data is intact (5/5", result.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"Cluster data in etcd is intact: /workload/demo read back through \S+-control-plane-2, as written through \S+-control-plane-0\.", result.Stdout);
        var left = Processes.Matching(ours).Where(p => p.CommandLine.Contains("asterism-demo-", StringComparison.Ordinal) && !before.Contains(p.Pid)).ToList();
        foreach (var p in left)
        {
            Processes.Kill(p.Pid);
        }
        Assert.Empty(left);
    }
}
