using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Asterism.Attestation;
using Asterism.Cli.Commands;
using Asterism.Cli.Recovery;
using Asterism.Cloud;
using Asterism.Config;
using Asterism.Crypto;
using Asterism.Protocol;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Asterism.Cli.Tests;

/// <summary>
/// Issue #15 item 4: the workspace's copy of the registry and its deny-list, and recover refusing a revoked node with
/// the whole control plane down. Each attack on the copy (a flipped byte, an older copy put back, a deleted copy, a copy
/// of another secret) is performed and seen refused; the revoked node is refused without being contacted.
/// </summary>
public sealed class RegistryCopyTests : IDisposable
{
    private const string Cp0Disk = "0b8d2a47-8d5e-4b4e-9d56-5a8b7e0c1f20";
    private const string Cp1Disk = "0b8d2a47-8d5e-4b4e-9d56-5a8b7e0c1f21";
    private const string Cp2Disk = "0b8d2a47-8d5e-4b4e-9d56-5a8b7e0c1f22";
    private readonly string _dir = Directory.CreateTempSubdirectory("asterism-cli-registry-").FullName;
    private readonly MasterSecret _master = MasterSecret.Generate();
    private readonly byte[] _salt = RandomNumberGenerator.GetBytes(KeyDerivation.MeasurementSaltLength);
    private readonly string _clusterId;

    public RegistryCopyTests()
    {
        Store = new RegistryCopyStore(_dir);
        // The ID the secret derives, as init records it: the dry run checks it before it reads the copy.
        using var measurement = KeyDerivation.DeriveMeasurementSecret(_master);
        _clusterId = Convert.ToHexStringLower(KeyDerivation.DeriveClusterId(measurement.Span, _salt));
    }

    private RegistryCopyStore Store { get; }

    public void Dispose()
    {
        _master.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private static IReadOnlyList<CopiedNode> ThreeControlPlanes(bool cp2Revoked = false) =>
    [
        new("control-plane-0", "control-plane", Cp0Disk, false, 0),
        new("control-plane-1", "control-plane", Cp1Disk, false, 0),
        new("control-plane-2", "control-plane", Cp2Disk, cp2Revoked, cp2Revoked ? 1_700_000_000_000 : 0),
    ];

    private RegistryCopy? Load() => Store.LoadForRecovery(_master, _clusterId, out _);

    [Fact]
    public void Initialize_SharesCase_KeyStoredWithoutSecretFile_FilesOwnerOnly_LoadVerifiesWithTheSecret()
    {
        Store.Initialize(_master, _clusterId, ThreeControlPlanes());

        // No master secret file in the workspace (as with init --shares): the stored key lets later commands write.
        Assert.False(File.Exists(Path.Combine(_dir, MasterSecret.DefaultFileName)));
        var refreshed = Store.Refresh(_clusterId, null, "control-plane-2");
        Assert.Equal(2, refreshed.Sequence);
        foreach (var file in new[] { Store.CopyPath, Store.HeadPath, Store.KeyPath })
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        }
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Store.Folder));
        var loaded = Load()!;
        Assert.Equal(["control-plane-2"], loaded.Revoked);
        Assert.Null(loaded.Denies("control-plane-0", Cp0Disk));
        Assert.Contains("control-plane-2 is revoked", loaded.Denies("control-plane-2", Cp2Disk), StringComparison.Ordinal);
    }

    [Fact]
    public void Denies_AnotherNameWithTheRevokedNodesDisk_Denied()
    {
        Store.Initialize(_master, _clusterId, ThreeControlPlanes(cp2Revoked: true));

        Assert.Contains("belongs to revoked control-plane-2", Load()!.Denies("control-plane-9", Cp2Disk), StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_EveryByteFlipped_Refused()
    {
        Store.Initialize(_master, _clusterId, ThreeControlPlanes(cp2Revoked: true));
        var bytes = File.ReadAllBytes(Store.CopyPath);
        using var key = RegistryCopy.DeriveMacKey(_master);
        Assert.NotNull(RegistryCopy.Parse(bytes, key.Span, Store.CopyPath));

        for (var i = 0; i < bytes.Length; i++)
        {
            var tampered = (byte[])bytes.Clone();
            tampered[i] ^= 0x01;
            var position = i;
            var refused = Record.Exception(() => RegistryCopy.Parse(tampered, key.Span, Store.CopyPath));
            Assert.True(refused is RegistryCopyException, $"byte {position} ({Encoding.UTF8.GetString(bytes, Math.Max(0, position - 20), Math.Min(40, bytes.Length - Math.Max(0, position - 20)))}) flipped: {refused?.GetType().Name ?? "accepted"}");
        }
    }

    [Fact]
    public void LoadForRecovery_RevocationEditedAway_OneLineNamingTheFile()
    {
        Store.Initialize(_master, _clusterId, ThreeControlPlanes(cp2Revoked: true));
        // The attack that matters: un-revoke the node, keep the JSON valid.
        var text = File.ReadAllText(Store.CopyPath);
        var edited = text.Replace("\"revoked\": true", "\"revoked\": false", StringComparison.Ordinal);
        Assert.NotEqual(text, edited);
        File.WriteAllText(Store.CopyPath, edited);

        var e = Assert.Throws<CliError>(Load);

        Assert.StartsWith($"registry copy {Store.CopyPath} was modified or belongs to another master secret (its MAC does not verify); refusing to recover: nothing was sent", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void LoadForRecovery_AnotherMasterSecret_Refused()
    {
        Store.Initialize(_master, _clusterId, ThreeControlPlanes());
        using var other = MasterSecret.Generate();

        var e = Assert.Throws<CliError>(() => Store.LoadForRecovery(other, _clusterId, out _));

        Assert.Contains("does not verify", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LoadForRecovery_StoredKeyReplacedAndCopyRewritten_RefusedBecauseRecoverDerivesItsOwnKey()
    {
        // Whoever writes a copy under another key (a replaced registry-mac.key) cannot make recover accept it.
        Store.Initialize(_master, _clusterId, ThreeControlPlanes(cp2Revoked: true));
        File.WriteAllBytes(Store.KeyPath, RandomNumberGenerator.GetBytes(32));
        File.Delete(Store.HeadPath);
        Store.Refresh(_clusterId, ThreeControlPlanes(cp2Revoked: false));

        Assert.Throws<CliError>(Load);
    }

    [Fact]
    public void LoadForRecovery_OlderCopyPutBack_RefusedAsRollback()
    {
        Store.Initialize(_master, _clusterId, ThreeControlPlanes());
        var beforeRevocation = File.ReadAllBytes(Store.CopyPath);
        Store.Refresh(_clusterId, ThreeControlPlanes(cp2Revoked: true));
        File.WriteAllBytes(Store.CopyPath, beforeRevocation);

        var e = Assert.Throws<CliError>(Load);

        Assert.StartsWith($"registry copy {Store.CopyPath} is older (sequence 1) than the last one this workspace wrote (sequence 2, {Store.HeadPath})", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LoadForRecovery_CopyDeletedHeadKept_Refused()
    {
        Store.Initialize(_master, _clusterId, ThreeControlPlanes(cp2Revoked: true));
        File.Delete(Store.CopyPath);

        var e = Assert.Throws<CliError>(Load);

        Assert.StartsWith($"registry copy {Store.CopyPath} is missing, but {Store.HeadPath} says copy 1 was written", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LoadForRecovery_CopyOfAnotherCluster_Refused()
    {
        Store.Initialize(_master, _clusterId, ThreeControlPlanes());

        var e = Assert.Throws<CliError>(() => Store.LoadForRecovery(_master, new string('a', 64), out _));

        Assert.Contains("is of cluster", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LoadForRecovery_OldWorkspaceWithoutCopy_WarningAndNoDenyList()
    {
        var copy = Store.LoadForRecovery(_master, _clusterId, out var warning);

        Assert.Null(copy);
        Assert.StartsWith($"no registry copy at {Store.CopyPath} (the workspace predates it)", warning, StringComparison.Ordinal);
    }

    [Fact]
    public void Refresh_StaleListWithoutTheRevocation_RevocationKept()
    {
        Store.Initialize(_master, _clusterId, ThreeControlPlanes());
        Store.Refresh(_clusterId, null, "control-plane-2");

        // A `node list` answered before the revocation, written after it: the revocation must survive.
        var copy = Store.Refresh(_clusterId, ThreeControlPlanes(cp2Revoked: false));

        Assert.Equal(3, copy.Sequence);
        Assert.Equal(["control-plane-2"], Load()!.Revoked);
    }

    [Fact]
    public void Refresh_OldWorkspaceWithSecretFile_DerivesTheKey_WithoutEither_SaysNoCopyIsKept()
    {
        var e = Assert.Throws<CliError>(() => Store.Refresh(_clusterId, ThreeControlPlanes()));
        Assert.StartsWith("no registry copy is kept", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Store.CopyPath));

        _master.Save(Path.Combine(_dir, MasterSecret.DefaultFileName));
        Store.Refresh(_clusterId, ThreeControlPlanes(cp2Revoked: true));

        Assert.Equal(["control-plane-2"], Load()!.Revoked);
    }

    [Fact]
    public async Task PushAsync_RevokedNode_RefusedWithoutBeingContacted()
    {
        Store.Initialize(_master, _clusterId, ThreeControlPlanes(cp2Revoked: true));
        var record = new NodeRecord([.. ThreeControlPlanes().Select(n => new RecordedNode(n.Name, n.Role, n.DiskUuid))]);
        using var listener = new TcpListener(IPAddress.Parse("127.0.0.1"), 0);
        listener.Start();
        var endpoint = $"127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}";
        var pusher = new RecoveryPusher(_master, new NeverCalledValidator(), record, NullLoggerFactory.Instance, TimeSpan.FromSeconds(5), Load());

        var pushed = await pusher.PushAsync(endpoint, "control-plane-2", CancellationToken.None);

        Assert.Equal(PushOutcome.Refused, pushed.Outcome);
        Assert.Equal($"Error: node control-plane-2 ({endpoint}): refused, no key sent: control-plane-2 is revoked on 2023-11-14T22:13:20Z (registry copy {Store.CopyPath}, sequence 1); it keeps waiting, not contacted",
            RecoverCommand.FailureLine("control-plane-2", pushed));
        Assert.False(listener.Pending(), "the revoked node was dialed");
    }

    [Fact]
    public async Task ProbeAsync_RevokedNode_DryRunSaysARealRunWouldRefuseIt()
    {
        Store.Initialize(_master, _clusterId, ThreeControlPlanes(cp2Revoked: true));
        var record = new NodeRecord([.. ThreeControlPlanes().Select(n => new RecordedNode(n.Name, n.Role, n.DiskUuid))]);
        var rehearsal = new RecoveryRehearsal(record, null, new NeverCalledValidator(), Load()!, NullLoggerFactory.Instance, TimeSpan.FromSeconds(5));

        var probed = await rehearsal.ProbeAsync("127.0.0.1:1", "control-plane-2", CancellationToken.None);

        Assert.StartsWith("Error: node control-plane-2 (127.0.0.1:1): a real run would refuse it and send no key: control-plane-2 is revoked", RecoveryRehearsal.FailureLine("control-plane-2", probed), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ParallelRecovery_OneRevokedWaitingControlPlane_OthersPushed_OneLineForIt_Exit1()
    {
        Store.Initialize(_master, _clusterId, ThreeControlPlanes(cp2Revoked: true));
        var record = new NodeRecord([.. ThreeControlPlanes().Select(n => new RecordedNode(n.Name, n.Role, n.DiskUuid))]);
        var deny = Load()!;
        var dialed = new List<string>();
        var instances = Enumerable.Range(0, 3).Select(i => new InstanceInfo
        {
            Name = $"control-plane-{i}",
            Role = CloudNames.ControlPlane,
            Address = $"127.9.9.{10 + i}",
            Power = CloudNames.Running,
        }).ToList();
        // The same gate the real pusher runs before dialing; the "dial" of the others is faked.
        var recovery = new ParallelRecovery(
            (node, _) =>
            {
                var endpoint = RecoveryPusher.RecoveryEndpoint(node.Address);
                if (RecoveryPusher.DeniedBeforeDial(deny, record, endpoint, node.Name) is { } denied)
                {
                    return Task.FromResult(denied);
                }
                lock (dialed)
                {
                    dialed.Add(node.Name);
                }
                return Task.FromResult(new PushResult(endpoint, PushOutcome.Recovered, "", node.Name, "simulated"));
            },
            (_, _) => Task.FromResult<string?>(BootPhases.WaitingForKey),
            new ParallelRecoveryOptions { Time = new FakeTimeProvider() });
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();

        var code = await recovery.RunAsync(instances, stdout, stderr, new Progress(TextWriter.Null, false), CancellationToken.None);

        Assert.Equal(1, code);
        Assert.Equal(["control-plane-0", "control-plane-1"], dialed.Order());
        var line = Assert.Single(stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("Error: node control-plane-2 (127.9.9.12:9999): refused, no key sent: control-plane-2 is revoked", line, StringComparison.Ordinal);
        Assert.Contains(RecoverCommand.RecoveredLine(2), stdout.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Recover_TamperedCopy_OneLineNamingTheFile_BeforeAnyNodeOrProviderIsContacted()
    {
        var workspace = InitializedWorkspace();
        Store.Initialize(_master, _clusterId, ThreeControlPlanes(cp2Revoked: true));
        var bytes = File.ReadAllBytes(Store.CopyPath);
        bytes[bytes.Length / 2] ^= 0x01;
        File.WriteAllBytes(Store.CopyPath, bytes);

        foreach (var args in new[] { new[] { "recover", "-C", workspace }, ["recover", "--dry-run", "-C", workspace] })
        {
            var run = await CliHarness.RunAsync(args);

            Assert.Equal(1, run.ExitCode);
            var errors = run.Stderr.Split('\n').Where(l => l.StartsWith("Error:", StringComparison.Ordinal)).ToList();
            Assert.StartsWith($"Error: registry copy {Store.CopyPath} ", Assert.Single(errors), StringComparison.Ordinal);
            // No provider runs here: had recover gone on, it would have said so.
            Assert.DoesNotContain("provider", run.Stderr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Recover_IgnoreRegistryCopy_SaysLoudlyThatRevocationsAreNotChecked()
    {
        var workspace = InitializedWorkspace();
        Store.Initialize(_master, _clusterId, ThreeControlPlanes(cp2Revoked: true));
        File.WriteAllText(Store.CopyPath, "garbage");

        var run = await CliHarness.RunAsync("recover", "--ignore-registry-copy", "-C", workspace);

        Assert.Contains(RecoverCommand.IgnoringCopyLine, run.Stderr, StringComparison.Ordinal);
        // It went on: to the provider, which is not running here.
        Assert.Contains("provider", run.Stderr, StringComparison.Ordinal);
    }

    /// <summary>What init leaves: config, state with this test's cluster ID, node record and master secret.</summary>
    private string InitializedWorkspace()
    {
        new ClusterConfig { Attestation = new AttestationSection { Variant = "simulated", TrustedKeys = [new string('a', 64)] } }.Save(Path.Combine(_dir, ClusterConfig.FileName));
        var state = new ClusterState
        {
            Infrastructure = new InfrastructureSection
            {
                Uid = "1a2b3c4d",
                Name = "asterism-1a2b3c4d",
                ClusterEndpoint = "127.42.7.2",
                InClusterEndpoint = "127.42.7.2",
                Local = new LocalInfrastructure { Subnet = "127.42.7", MetadataEndpoint = "http://127.42.7.1:8080" },
            },
        };
        state.ClusterValues.ClusterId = _clusterId;
        state.ClusterValues.MeasurementSalt = Convert.ToHexStringLower(_salt);
        state.Save(Path.Combine(_dir, ClusterState.FileName));
        new NodeRecord([.. ThreeControlPlanes().Select(n => new RecordedNode(n.Name, n.Role, n.DiskUuid))]).Save(Path.Combine(_dir, NodeRecord.FileName), _master);
        _master.Save(Path.Combine(_dir, MasterSecret.DefaultFileName));
        return _dir;
    }

    private sealed class NeverCalledValidator : IAttestationValidator
    {
        public AttestationVariant Variant => AttestationVariant.Simulated;

        public ValueTask<AttestationVerdict> ValidateAsync(ReadOnlyMemory<byte> document, ReadOnlyMemory<byte> nonce, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("a revoked node must not be dialed");
    }
}
