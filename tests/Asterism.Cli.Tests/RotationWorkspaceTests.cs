using Asterism.Cli.Commands;
using Asterism.Cli.Recovery;
using Asterism.Config;
using Asterism.Crypto;

namespace Asterism.Cli.Tests;

/// <summary>
/// The workspace side of master-secret rotation without a cluster: what beginning writes, how completing moves the
/// workspace (the cluster ID stays; generation, key check, secret file, node record and registry copy move), a crash
/// after every step of the completion, the generation-aware keys recover offers and in which order, and shares of the
/// new and of a void generation.
/// </summary>
public sealed class RotationWorkspaceTests : IDisposable
{
    [Theory]
    [InlineData("ControlPlane", "control-plane")]
    [InlineData("Worker", "worker")]
    [InlineData("control-plane", "control-plane")]
    public void RecordRole_RegistryRoleAsListed_NodeRecordRoleName(string listed, string recorded) =>
        // The node record compares roles with the certified identity's names; the cluster API lists the registry's.
        // A mismatch here made every control plane "not a control plane of this cluster's node record" after rotation.
        Assert.Equal(recorded, SecretRotation.RecordRole(listed));

    [Fact]
    public void RecordRole_UnknownRole_Refused() =>
        Assert.Contains("unknown role", Assert.Throws<CliError>(() => SecretRotation.RecordRole("Admin")).Message, StringComparison.Ordinal);

    private const string Uuid = "0f3c2d4e-1a2b-4c3d-8e9f-001122334455";
    private readonly string _dir = Directory.CreateTempSubdirectory("asterism-cli-rotation-").FullName;
    private readonly List<RecordedNode> _nodes = [new("control-plane-0", "control-plane", Uuid), new("worker-0", "worker", "1f3c2d4e-1a2b-4c3d-8e9f-001122334455")];

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>An initialized workspace of generation 1: state, secret file, node record and registry copy.</summary>
    private Workspace Cluster()
    {
        var directory = Directory.CreateDirectory(Path.Combine(_dir, "ws")).FullName;
        File.WriteAllText(Path.Combine(directory, ClusterConfig.FileName), "kept: config\n");
        using var master = MasterSecret.Generate();
        master.Save(Path.Combine(directory, MasterSecret.DefaultFileName));
        var salt = new byte[32];
        Random.Shared.NextBytes(salt);
        var state = new ClusterState
        {
            Infrastructure = new InfrastructureSection
            {
                Uid = "uid",
                Name = "ws",
                ClusterEndpoint = "127.0.0.1",
                InClusterEndpoint = "127.0.0.1",
                Local = new LocalInfrastructure { Subnet = "127.9.9", MetadataEndpoint = "http://127.9.9.1:8080" },
            },
        };
        state.ClusterValues.ClusterId = Convert.ToHexStringLower(KeyDerivation.DeriveKeyCheck(master, salt));
        state.ClusterValues.MeasurementSalt = Convert.ToHexStringLower(salt);
        state.Save(Path.Combine(directory, ClusterState.FileName));
        var workspace = new Workspace(directory);
        new NodeRecord(_nodes).Save(workspace.NodeRecordPath, master);
        new RegistryCopyStore(directory).Initialize(master, state.ClusterValues.ClusterId, _nodes.Select(n => new CopiedNode(n.Name, n.Role, n.DiskUuid, false, 0)));
        return workspace;
    }

    private static KeyGenerations Generations(Workspace workspace) => KeyGenerations.Load(workspace);

    /// <summary>What <c>secret rotate</c> writes before it sends anything (file mode); returns a copy of the new secret.</summary>
    private MasterSecret Begin(Workspace workspace, ShareRequest? shares = null)
    {
        var next = MasterSecret.Generate();
        SecretRotation.WriteNext(workspace, workspace.LoadState().ClusterValues.ClusterId!, Generations(workspace), shares, _nodes, next, TextWriter.Null);
        return next;
    }

    private static string ClusterIdOf(Workspace workspace) => workspace.LoadState().ClusterValues.ClusterId!;

    [Fact]
    public void Begin_WritesNewSecretRecordKeyAndPending_CurrentSecretUntouched()
    {
        var workspace = Cluster();
        var before = File.ReadAllBytes(workspace.MasterSecretPath);
        using var next = Begin(workspace);

        var generations = Generations(workspace);
        Assert.Equal(new SecretGeneration(1, ClusterIdOf(workspace)), generations.Current);
        Assert.Equal(2, generations.Pending!.Generation);
        Assert.Equal(generations.KeyCheckOf(next), generations.Pending.KeyCheck);
        Assert.NotEqual(ClusterIdOf(workspace), generations.Pending.KeyCheck);
        Assert.Equal(before, File.ReadAllBytes(workspace.MasterSecretPath));
        foreach (var file in new[] { SecretRotation.NextFileName, NodeRecord.NextFileName, KeyGenerations.PendingFileName, "admin/registry-mac.next.key" })
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(workspace.Directory, file)));
        }
        // The next record verifies only under the new secret.
        NodeRecord.Load(Path.Combine(workspace.Directory, NodeRecord.NextFileName), next);
    }

    [Fact]
    public void Complete_WorkspaceMoves_ClusterIdStays_GenerationKeyCheckSecretRecordAndCopyMove()
    {
        var workspace = Cluster();
        var clusterId = ClusterIdOf(workspace);
        using var old = Workspace.LoadMasterSecret(workspace.MasterSecretPath);
        using var next = Begin(workspace);
        var generations = Generations(workspace);

        SecretRotation.FinishWorkspace(workspace, generations, generations.Pending!);

        var after = Generations(workspace);
        Assert.Equal(clusterId, ClusterIdOf(workspace));
        Assert.Equal(new SecretGeneration(2, generations.KeyCheckOf(next)), after.Current);
        Assert.Null(after.Pending);
        Assert.False(File.Exists(after.PendingPath));
        Assert.False(File.Exists(Path.Combine(workspace.Directory, SecretRotation.NextFileName)));
        using (var moved = Workspace.LoadMasterSecret(workspace.MasterSecretPath))
        {
            Assert.Equal(next.Key.ToArray(), moved.Key.ToArray());
        }
        NodeRecord.Load(workspace.NodeRecordPath, next);
        Assert.Throws<CliError>(() => NodeRecord.Load(workspace.NodeRecordPath, old));
        // The registry copy: readable with the new secret, refused with the old one.
        var store = new RegistryCopyStore(workspace.Directory);
        Assert.NotNull(store.LoadForRecovery(next, clusterId, out _));
        var refused = Assert.Throws<CliError>(() => store.LoadForRecovery(old, clusterId, out _));
        Assert.Contains("refusing to recover", refused.Message, StringComparison.Ordinal);
        // And the stored key follows: a later refresh writes under the new key.
        store.Refresh(clusterId, null);
        Assert.NotNull(store.LoadForRecovery(next, clusterId, out _));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Complete_CrashAfterStep_RecoverStillWorks_SecondCompleteFinishes(int step)
    {
        var workspace = Cluster();
        var clusterId = ClusterIdOf(workspace);
        using var next = Begin(workspace);
        var generations = Generations(workspace);
        var target = generations.Pending!;

        Assert.Throws<IOException>(() => SecretRotation.FinishWorkspace(workspace, generations, target, s =>
        {
            if (s == step)
            {
                throw new IOException("simulated crash");
            }
        }));

        // recover with the workspace as the crash left it: the new generation's secret is offered first, and the node
        // record and registry copy verify.
        using (var secrets = RecoverCommand.LoadSecrets(workspace, null, null, [], null, TextWriter.Null))
        {
            Assert.Equal(2, secrets.Newest.Generation);
            Assert.Equal(next.Key.ToArray(), secrets.Newest.Master.Key.ToArray());
            var masters = secrets.InOrder.Select(s => s.Master).ToList();
            NodeRecord.LoadAny(workspace.NodeRecordPath, Path.Combine(workspace.Directory, NodeRecord.NextFileName), masters);
            Assert.NotNull(new RegistryCopyStore(workspace.Directory).LoadForRecovery(masters, clusterId, out _));
        }

        // The second --complete (the cluster answers "completed earlier") finishes the workspace.
        var again = Generations(workspace);
        SecretRotation.FinishWorkspace(workspace, again, again.Pending ?? again.Current);
        var done = Generations(workspace);
        Assert.Equal(new SecretGeneration(2, target.KeyCheck), done.Current);
        Assert.Null(done.Pending);
        Assert.False(File.Exists(done.PendingPath));
        Assert.Equal(clusterId, ClusterIdOf(workspace));
        using var only = RecoverCommand.LoadSecrets(workspace, null, null, [], null, TextWriter.Null);
        Assert.Equal([2], only.InOrder.Select(s => s.Generation));
        Assert.NotNull(new RegistryCopyStore(workspace.Directory).LoadForRecovery(next, clusterId, out _));
        NodeRecord.Load(workspace.NodeRecordPath, next);
    }

    [Fact]
    public void LoadSecrets_RotationPending_NewGenerationFirstThenOld()
    {
        var workspace = Cluster();
        using var next = Begin(workspace);
        var stderr = new StringWriter();
        using var secrets = RecoverCommand.LoadSecrets(workspace, null, null, [], null, stderr);
        Assert.Equal([2, 1], secrets.InOrder.Select(s => s.Generation));
        Assert.Equal(next.Key.ToArray(), secrets.InOrder[0].Master.Key.ToArray());
        Assert.Equal("", stderr.ToString());
    }

    [Fact]
    public void LoadSecrets_RotationPendingNextFileGone_WarnsThatNewGenerationNodesWillRefuse()
    {
        var workspace = Cluster();
        using var next = Begin(workspace);
        File.Move(Path.Combine(workspace.Directory, SecretRotation.NextFileName), Path.Combine(_dir, "elsewhere.json"));
        var stderr = new StringWriter();
        using (var secrets = RecoverCommand.LoadSecrets(workspace, null, null, [], null, stderr))
        {
            Assert.Equal([1], secrets.InOrder.Select(s => s.Generation));
        }
        Assert.StartsWith("Warning: a rotation to generation 2 is pending and only the secret of generation 1 is at hand", stderr.ToString(), StringComparison.Ordinal);
        // --next-master-secret gives it back.
        using var both = RecoverCommand.LoadSecrets(workspace, null, null, [], Path.Combine(_dir, "elsewhere.json"), TextWriter.Null);
        Assert.Equal([2, 1], both.InOrder.Select(s => s.Generation));
    }

    [Fact]
    public void LoadSecrets_AfterCompletion_OldSecretFileRefusedBeforeAnyNode()
    {
        var workspace = Cluster();
        var saved = Path.Combine(_dir, "old-secret.json");
        File.Copy(workspace.MasterSecretPath, saved);
        using var next = Begin(workspace);
        var generations = Generations(workspace);
        SecretRotation.FinishWorkspace(workspace, generations, generations.Pending!);

        var refused = Assert.Throws<CliError>(() => RecoverCommand.LoadSecrets(workspace, saved, null, [], null, TextWriter.Null));
        Assert.Contains("is not this cluster's secret of generation 2", refused.Message, StringComparison.Ordinal);
        Assert.Contains("nothing was sent", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NextMasterSecret_Foreign_Refused()
    {
        var workspace = Cluster();
        using var next = Begin(workspace);
        var foreign = Path.Combine(_dir, "foreign.json");
        using (var other = MasterSecret.Generate())
        {
            other.Save(foreign);
        }
        var refused = Assert.Throws<CliError>(() => RecoverCommand.LoadSecrets(workspace, null, null, [], foreign, TextWriter.Null));
        Assert.StartsWith($"--next-master-secret \"{foreign}\" is not this cluster's secret", refused.Message, StringComparison.Ordinal);
    }

    /// <summary>A node double: its keyslot 0 holds the disk key of one generation; anything else is "state disk key rejected".</summary>
    private static Func<GenerationSecret, Task<PushResult>> Node(MasterSecret diskMaster, int diskGeneration, List<int> offered)
    {
        using var slot = KeyDerivation.DeriveDiskKey(diskMaster, Uuid, diskGeneration);
        var expected = slot.ToArray();
        return secret =>
        {
            offered.Add(secret.Generation);
            using var key = RecoverySecrets.DiskKey(secret, Uuid);
            return Task.FromResult(key.Span.SequenceEqual(expected)
                ? new PushResult("node", PushOutcome.Recovered, "")
                : new PushResult("node", PushOutcome.KeyRejected, "state disk key rejected"));
        };
    }

    [Fact]
    public async Task OfferInTurn_NodeStillOnOldGeneration_NewRejectedThenOldAccepted()
    {
        using var old = MasterSecret.Generate();
        using var next = MasterSecret.Generate();
        using var secrets = new RecoverySecrets([new(Copy(old), 1), new(Copy(next), 2)]);
        var offered = new List<int>();
        var result = await secrets.OfferInTurnAsync(Node(old, 1, offered));
        Assert.Equal(PushOutcome.Recovered, result.Outcome);
        Assert.Equal([2, 1], offered);
    }

    [Fact]
    public async Task OfferInTurn_NodeMovedToNewGeneration_FirstOfferAccepted_GenerationNamedInTheKey()
    {
        using var next = MasterSecret.Generate();
        using var old = MasterSecret.Generate();
        using var secrets = new RecoverySecrets([new(Copy(old), 1), new(Copy(next), 2)]);
        var offered = new List<int>();
        Assert.Equal(PushOutcome.Recovered, (await secrets.OfferInTurnAsync(Node(next, 2, offered))).Outcome);
        Assert.Equal([2], offered);
        // The generation is in the key: the same secret used as generation 1 derives another key (the node refuses it).
        using var gen2 = KeyDerivation.DeriveDiskKey(next, Uuid, 2);
        using var gen1 = KeyDerivation.DeriveDiskKey(next, Uuid, 1);
        Assert.False(gen2.Span.SequenceEqual(gen1.Span));
    }

    [Fact]
    public async Task OfferInTurn_VoidSecretOnly_NodeRefusesEveryOffer_KeyRejected()
    {
        using var disk = MasterSecret.Generate();
        using var stale = MasterSecret.Generate();
        using var secrets = RecoverySecrets.Single(Copy(stale), 2);
        var offered = new List<int>();
        var result = await secrets.OfferInTurnAsync(Node(disk, 2, offered));
        Assert.Equal(PushOutcome.KeyRejected, result.Outcome);
        Assert.Equal([2], offered);
    }

    [Fact]
    public async Task OfferInTurn_KeyOpenedDiskButStateUnusable_OlderGenerationNotTried()
    {
        using var a = MasterSecret.Generate();
        using var b = MasterSecret.Generate();
        using var secrets = new RecoverySecrets([new(Copy(a), 1), new(Copy(b), 2)]);
        var offered = new List<int>();
        var result = await secrets.OfferInTurnAsync(s =>
        {
            offered.Add(s.Generation);
            return Task.FromResult(new PushResult("node", PushOutcome.KeyRejected, "state disk unusable"));
        });
        Assert.Equal([2], offered);
        Assert.Equal("state disk unusable", result.Detail);
    }

    [Fact]
    public async Task Verify_SharesOfPendingGeneration_CheckedAgainstItsKeyCheck_ThenVoidAfterCompletion()
    {
        var workspace = Cluster();
        var sharesDir = Path.Combine(workspace.Directory, SecretRotation.SharesDirectoryName(2));
        using var next = Begin(workspace, new ShareRequest(2, 3, null, sharesDir));
        var one = Path.Combine(sharesDir, ShareFiles.FileName(1, false));
        var two = Path.Combine(sharesDir, ShareFiles.FileName(2, false));

        var pending = await CliHarness.RunAsync("secret", "verify", "-C", workspace.Directory, "--share", one, "--share", two);
        Assert.True(pending.ExitCode == 0, pending.Stderr);
        Assert.Contains("generation 2 (the pending rotation's)", pending.Stdout, StringComparison.Ordinal);

        // Old shares (generation 1) split before completion, refused after it.
        var oldDir = Path.Combine(_dir, "old-shares");
        var split = await CliHarness.RunAsync("secret", "split", "--threshold", "2", "--shares", "2", "--no-encrypt", "--out", oldDir, "-C", workspace.Directory);
        Assert.True(split.ExitCode == 0, split.Stderr);
        var generations = Generations(workspace);
        SecretRotation.FinishWorkspace(workspace, generations, generations.Pending!);

        var current = await CliHarness.RunAsync("secret", "verify", "-C", workspace.Directory, "--share", two, "--share", one);
        Assert.True(current.ExitCode == 0, current.Stderr);
        Assert.Contains("generation 2 (current)", current.Stdout, StringComparison.Ordinal);
        var voided = await CliHarness.RunAsync("secret", "verify", "-C", workspace.Directory,
            "--share", Path.Combine(oldDir, ShareFiles.FileName(1, false)), "--share", Path.Combine(oldDir, ShareFiles.FileName(2, false)));
        Assert.Equal(1, voided.ExitCode);
        Assert.StartsWith("Error: the shares are of a void generation (1)", voided.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Verify_SharesRelabelledToAnotherGeneration_RefusedAsAnotherSplit()
    {
        var workspace = Cluster();
        var sharesDir = Path.Combine(workspace.Directory, SecretRotation.SharesDirectoryName(2));
        using var next = Begin(workspace, new ShareRequest(2, 2, null, sharesDir));
        var files = new[] { 1, 2 }.Select(i => Path.Combine(sharesDir, ShareFiles.FileName(i, false))).ToArray();
        foreach (var file in files)
        {
            var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllBytes(file))!;
            json["generation"] = 1;
            File.WriteAllText(file, json.ToJsonString());
        }
        var run = await CliHarness.RunAsync("secret", "verify", "-C", workspace.Directory, "--share", files[0], "--share", files[1]);
        Assert.Equal(1, run.ExitCode);
        Assert.DoesNotContain("OK", run.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--shares", "3")]
    [InlineData("--threshold", "2")]
    public async Task Rotate_SharesWithoutThreshold_UsageError_NothingWritten(string option, string value)
    {
        var workspace = Cluster();
        var before = Directory.GetFileSystemEntries(workspace.Directory).Order().ToArray();
        var run = await CliHarness.RunAsync("secret", "rotate", option, value, "--no-encrypt", "-C", workspace.Directory);
        Assert.Equal(2, run.ExitCode);
        Assert.Equal(before, Directory.GetFileSystemEntries(workspace.Directory).Order().ToArray());
    }

    [Theory]
    [InlineData("--status", "--complete")]
    [InlineData("--complete", "--shares", "3", "--threshold", "2", "--no-encrypt")]
    public async Task Rotate_ConflictingOptions_UsageError(params string[] options)
    {
        var workspace = Cluster();
        var run = await CliHarness.RunAsync(["secret", "rotate", .. options, "-C", workspace.Directory]);
        Assert.Equal(2, run.ExitCode);
        Assert.Equal(1, run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Count(l => l.StartsWith("Error", StringComparison.Ordinal) || l.Contains("exclude", StringComparison.Ordinal) || l.Contains("belong", StringComparison.Ordinal)));
    }

    [Fact]
    public void StatusLine_PendingWithNodesBehind_OneLineNamingThem()
    {
        var status = new Asterism.Protocol.ClusterApi.RotationStatus { CurrentGeneration = 1, PendingGeneration = 2 };
        status.Behind.Add("worker-0");
        Assert.Equal("Key rotation 1 -> 2 pending: 1 node(s) still on generation 1: worker-0", StatusCommand.RotationLine(status));
        Assert.Equal("", StatusCommand.RotationLine(new Asterism.Protocol.ClusterApi.RotationStatus { CurrentGeneration = 2 }));
    }

    private static MasterSecret Copy(MasterSecret master) => MasterSecret.FromBytes(master.Key, master.Salt);
}
