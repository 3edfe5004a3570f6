using Asterism.Crypto;
using Asterism.EndToEnd.Tests.Infrastructure;
using Asterism.Protocol;
using Asterism.Secrets;

namespace Asterism.EndToEnd.Tests.Operator;

/// <summary>Two control planes, initialized by the test with --shares.</summary>
public sealed class SharedSecretCluster : ClusterFixture
{
    public override string Variant => "simulated";

    public override int ControlPlanes => 2;

    public override int Workers => 0;

    public override bool InitAtStart => false;

    /// <summary>The three holders' age identities, for every step of the scenario.</summary>
    public IReadOnlyList<AgeIdentity> Holders { get; } = [.. Enumerable.Range(0, 3).Select(_ => AgeIdentity.Generate())];

    public override async Task DisposeAsync()
    {
        foreach (var holder in Holders)
        {
            holder.Dispose();
        }
        await base.DisposeAsync();
    }
}

/// <summary>
/// Issue 16 items 1–2 on a real cluster: `init --shares` leaves no master secret file, only age-encrypted shares;
/// `secret verify` accepts K of them; after losing every node, `recover --share` with K shares brings the cluster back
/// and K−1 shares are refused before any node is contacted.
/// </summary>
public sealed class SecretSharesTests(SharedSecretCluster cluster) : IClassFixture<SharedSecretCluster>
{
    private IReadOnlyList<AgeIdentity> Holders => cluster.Holders;

    private string IdentityFile(int i)
    {
        var path = Path.Combine(cluster.Workspace, $"holder{i}.txt");
        if (!File.Exists(path))
        {
            File.WriteAllText(path, Holders[i].Encode() + "\n");
        }
        return path;
    }

    private string Share(int index) => Path.Combine(cluster.Workspace, "asterism-shares", $"asterism-share-{index}.age");

    [Fact]
    [Step(1)]
    public async Task InitWithShares_NoMasterSecretFile_SharesVerify()
    {
        await cluster.InitAsync("--shares", "3", "--threshold", "2",
            "-r", Holders[0].Recipient.ToString(), "-r", Holders[1].Recipient.ToString(), "-r", Holders[2].Recipient.ToString());
        Assert.False(File.Exists(Path.Combine(cluster.Workspace, MasterSecret.DefaultFileName)));
        Assert.True(File.Exists(Share(3)));
        var verify = await cluster.Cli.RunOkAsync("secret", "verify", "--share", Share(1), "--share", Share(3), "-i", IdentityFile(0), "-i", IdentityFile(2));
        Assert.StartsWith("OK: the shares rebuild the master secret of cluster ", verify.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    [Step(2)]
    public async Task RecoverWithShares_AfterLosingEveryNode_RecoversAndOneShareIsRefused()
    {
        await cluster.EnsureAllBootedAsync();
        await cluster.Cli.RunOkAsync("power", "crash", "--all");
        await cluster.Cli.RunOkAsync("power", "start", "--all");

        var tooFew = await cluster.Cli.RunAsync("recover", "--share", Share(2), "-i", IdentityFile(1));
        Assert.Equal(1, tooFew.ExitCode);
        Assert.Contains("Error: need 2 shares, have 1", tooFew.StderrLines);

        var recover = await cluster.Cli.RunAsync("recover", "--share", Share(2), "--share", Share(3), "-i", IdentityFile(1), "-i", IdentityFile(2));
        Assert.True(recover.ExitCode == 0, recover.ToString());
        Assert.Contains(recover.StdoutLines, l => l.StartsWith("Recovered ", StringComparison.Ordinal));
        await cluster.WaitForPhaseAsync(cluster.Instances, BootPhases.Booted);
        Assert.False(File.Exists(Path.Combine(cluster.Workspace, MasterSecret.DefaultFileName)));
    }
}
