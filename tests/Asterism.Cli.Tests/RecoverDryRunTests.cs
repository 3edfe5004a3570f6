using System.Security.Cryptography;
using Asterism.Cli.Recovery;
using Asterism.Config;
using Asterism.Crypto;

namespace Asterism.Cli.Tests;

/// <summary>
/// `recover --dry-run` without a cluster: its usage rule and its check of the master secret (the node record's MAC,
/// the cluster ID the secret derives). The walk over real nodes is tested end to end (RecoverDryRunTests there).
/// </summary>
public sealed class RecoverDryRunTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("asterism-cli-dryrun-").FullName;
    private readonly MasterSecret _master = MasterSecret.Generate();

    public void Dispose()
    {
        _master.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task RecoverDryRun_WithEndpoint_UsageErrorBeforeAnyFileIsRead()
    {
        var run = await CliHarness.RunAsync("recover", "--dry-run", "--endpoint", "127.0.0.1", "-C", Path.Combine(_dir, "missing"));

        Assert.Equal(2, run.ExitCode);
        Assert.StartsWith("Error: --dry-run checks every control plane at its own address; it cannot be combined with --endpoint", run.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(PushOutcome.AttestationFailed, "attestation failed", "attestation failed")]
    [InlineData(PushOutcome.KeyRejected, "key refused by the node", "the node would refuse the key")]
    [InlineData(PushOutcome.Refused, "refused, no key sent", "a real run would refuse it and send no key")]
    [InlineData(PushOutcome.Failed, "recovery failed", "a real run would fail")]
    public void FailureLine_EveryOutcome_RealRunAndRehearsalShareTheShape(PushOutcome outcome, string real, string rehearsed)
    {
        var result = new PushResult("127.42.0.11:9999", outcome, "the detail");

        Assert.Equal($"Error: node cp-0 (127.42.0.11:9999): {real}: the detail", Commands.RecoverCommand.FailureLine("cp-0", result));
        Assert.Equal($"Error: node cp-0 (127.42.0.11:9999): {rehearsed}: the detail", RecoveryRehearsal.FailureLine("cp-0", result));
    }

    [Fact]
    public void CheckSecret_TheClustersSecret_NoProblem_RecordLoaded()
    {
        var (state, recordPath) = Cluster(_master);

        var problem = RecoveryRehearsal.CheckSecret(_master, state, recordPath, out var record);

        Assert.Null(problem);
        Assert.Equal("control-plane-0", Assert.Single(record!.Nodes).Name);
    }

    [Fact]
    public void CheckSecret_AnotherClustersSecret_NamesTheRecord_NoRecord()
    {
        var (state, recordPath) = Cluster(_master);
        using var other = MasterSecret.Generate();

        var problem = RecoveryRehearsal.CheckSecret(other, state, recordPath, out var record);

        Assert.Null(record);
        Assert.Contains("another master secret", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void CheckSecret_StateOfAnotherCluster_SaysEveryNodeWouldRefuseIt()
    {
        var (state, recordPath) = Cluster(_master);
        state.ClusterValues.ClusterId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));

        var problem = RecoveryRehearsal.CheckSecret(_master, state, recordPath, out _);

        Assert.Equal("the master secret does not derive this cluster's ID (asterism-state.yaml): every node would refuse it", problem);
    }

    /// <summary>What `init` leaves behind: a state with the cluster ID the secret derives, and a MAC'd node record.</summary>
    private (ClusterState State, string RecordPath) Cluster(MasterSecret master)
    {
        var salt = RandomNumberGenerator.GetBytes(KeyDerivation.MeasurementSaltLength);
        using var measurement = KeyDerivation.DeriveMeasurementSecret(master);
        var state = new ClusterState();
        state.ClusterValues.ClusterId = Convert.ToHexStringLower(KeyDerivation.DeriveClusterId(measurement.Span, salt));
        state.ClusterValues.MeasurementSalt = Convert.ToHexStringLower(salt);
        var recordPath = Path.Combine(_dir, NodeRecord.FileName);
        new NodeRecord([new RecordedNode("control-plane-0", "control-plane", "0b8d2a47-8d5e-4b4e-9d56-5a8b7e0c1f23")]).Save(recordPath, master);
        return (state, recordPath);
    }
}
