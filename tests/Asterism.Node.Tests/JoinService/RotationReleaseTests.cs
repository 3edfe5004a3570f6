using System.Security.Cryptography;
using System.Text;
using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Attestation.Identities;
using Asterism.Attestation.Simulated;
using Asterism.ControlPlane;
using Asterism.ControlPlane.Tests;
using Asterism.Crypto;
using Asterism.JoinService;
using Asterism.Node.Tests.Fakes;
using Asterism.Protocol.Join;
using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;
using RegistryRole = Asterism.ControlPlane.NodeRole;

namespace Asterism.Node.Tests.JoinService;

/// <summary>
/// What join, rejoin and the rotation call release around a master-secret rotation (issue #16 item 4), over a real
/// one-member etcd: a rejoin gets its registry generation's keys and, while a rotation to a higher generation is pending,
/// the target's too; a join registers at the cluster's current generation; only control planes get the next master
/// secret; a generation this control plane cannot serve is refused before anything is audited or derived. Every
/// expected key is derived independently from the secrets the test holds.
/// </summary>
public sealed class RotationReleaseTests : IAsyncLifetime
{
    private const string Authority = "ca-fingerprint";
    private static readonly AttestationPolicy Policy = new() { Variant = AttestationVariant.Simulated, Measurements = Measurements.Empty };
    private readonly byte[] _salt = RandomNumberGenerator.GetBytes(KeyDerivation.MeasurementSaltLength);
    private readonly MasterSecret _first = MasterSecret.Generate();
    private readonly MasterSecret _next = MasterSecret.Generate();
    private ClusterSecrets _secrets = null!;
    private byte[] _clusterId = null!;
    private TestCluster _cluster = null!;
    private EtcdConnection _connection = null!;
    private KeyReleaseGate _gate = null!;
    private JoinApiService _service = null!;
    private RotationApiService _rotationService = null!;
    private KeyRotation _rotation = null!;

    public async Task InitializeAsync()
    {
        _secrets = new ClusterSecrets(Copy(_first), _salt, Policy);
        _clusterId = KeyDerivation.DeriveClusterId(_secrets.ClusterMeasurementSecret, _salt);
        _cluster = TestCluster.Create();
        await _cluster.StartFirstAsync();
        _connection = _cluster.Connect(TimeSpan.FromSeconds(2));
        _gate = new KeyReleaseGate(_connection, Path.Combine(_cluster.Root, "ca"), NullLoggerFactory.Instance);
        _service = new JoinApiService(_secrets, NullLoggerFactory.Instance, _gate);
        _rotationService = new RotationApiService(new RotationGate(_connection, _secrets, _clusterId, NullLoggerFactory.Instance), NullLoggerFactory.Instance);
        _rotation = new KeyRotation(_connection);
    }

    public async Task DisposeAsync()
    {
        _gate.Dispose();
        _connection.Dispose();
        await _cluster.DisposeAsync();
        _secrets.Dispose();
        _first.Dispose();
        _next.Dispose();
    }

    [Fact]
    public async Task IssueRejoinTicket_Generation1RecordDuringPendingRotation_BothGenerationsReleasedAndAudited()
    {
        var worker = await JoinWorkerAsync("worker-0");
        await BeginAsync();

        var ticket = await RejoinAsync(worker);

        AssertKeys(ticket.StateDiskKey, ticket.MeasurementSecret, _first, worker.DiskUuid, 1);
        Assert.Equal(1u, ticket.KeyGeneration);
        Assert.Equal(2u, ticket.NextKeyGeneration);
        AssertKeys(ticket.NextStateDiskKey, ticket.NextMeasurementSecret, _next, worker.DiskUuid, 2);
        var released = (await EntriesAsync()).Last();
        Assert.Equal((AuditKind.Release, "worker-0"), (released.Kind, released.Node));
        Assert.Contains("generations 1 and 2", released.Detail, StringComparison.Ordinal);
        // The opened seal is kept: later calls take the next secret from memory.
        Assert.Equal(2, _secrets.NextGeneration);
        var again = await RejoinAsync(worker);
        AssertKeys(again.NextStateDiskKey, again.NextMeasurementSecret, _next, worker.DiskUuid, 2);
    }

    [Fact]
    public async Task IssueRejoinTicket_AfterConfirmation_OnlyTargetGeneration()
    {
        var worker = await JoinWorkerAsync("worker-0");
        await BeginAsync();
        await _rotation.ConfirmAsync("worker-0", 2);
        // Confirming twice (a node whose confirmation answer was lost) changes nothing.
        Assert.Equal(2, (await _rotation.ConfirmAsync("worker-0", 2)).KeyGeneration);

        var ticket = await RejoinAsync(worker);

        Assert.Equal(2u, ticket.KeyGeneration);
        AssertKeys(ticket.StateDiskKey, ticket.MeasurementSecret, _next, worker.DiskUuid, 2);
        AssertNoNext(ticket);
        Assert.Contains("(generation 2)", (await EntriesAsync()).Last().Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task IssueRejoinTicket_AfterCompletionAndPromotion_OnlyNewGenerationNoNextFields()
    {
        var worker = await JoinWorkerAsync("worker-0");
        await BeginAsync();
        await _rotation.ConfirmAsync("worker-0", 2);
        await _rotation.CompleteAsync("admin", "control-plane-0");
        PromoteToNext();

        var ticket = await RejoinAsync(worker);

        Assert.Equal(2u, ticket.KeyGeneration);
        AssertKeys(ticket.StateDiskKey, ticket.MeasurementSecret, _next, worker.DiskUuid, 2);
        AssertNoNext(ticket);
    }

    [Fact]
    public async Task IssueRejoinTicket_RevokedNodeDuringRotation_NothingReleased()
    {
        var worker = await JoinWorkerAsync("worker-0");
        await BeginAsync();
        await _gate.Registry.RevokeAsync("worker-0", DateTimeOffset.UtcNow);
        var releases = await ReleaseCountAsync();

        var error = await Assert.ThrowsAsync<RpcException>(() => RejoinAsync(worker));

        Assert.Equal((StatusCode.PermissionDenied, "the node registry refuses this node"), (error.StatusCode, error.Status.Detail));
        Assert.Equal(releases, await ReleaseCountAsync());
        Assert.Equal(AuditKind.RefusedRelease, (await EntriesAsync()).Last().Kind);
    }

    [Fact]
    public async Task IssueRejoinTicket_RecordOnAVoidGeneration_RefusedNothingAudited()
    {
        var worker = await JoinWorkerAsync("worker-0");
        // The rotation completed while this node's record stayed on generation 1 (only a revoked node can, but a record
        // edited behind the registry's back looks the same): this control plane no longer holds generation 1.
        await SetGenerationKeyAsync(2);
        using var promoted = new ClusterSecrets(Copy(_next), 2, SecretBytes.CopyOf(_secrets.ClusterMeasurementSecret), _salt, Policy);
        var service = new JoinApiService(promoted, NullLoggerFactory.Instance, _gate);
        var before = (await EntriesAsync()).Count;

        var error = await Assert.ThrowsAsync<RpcException>(() => service.IssueRejoinTicket(new IssueRejoinTicketRequest { DiskUuid = worker.DiskUuid }, Call(worker)));

        Assert.Equal((StatusCode.FailedPrecondition, "key generation 1 is void on this control plane"), (error.StatusCode, error.Status.Detail));
        Assert.Equal(before, (await EntriesAsync()).Count);
    }

    [Fact]
    public async Task IssueRejoinTicket_RecordAheadOfThisControlPlane_UnavailableNothingAudited()
    {
        var worker = await JoinWorkerAsync("worker-0");
        await _gate.Registry.UpdateAsync("worker-0", r => r with { KeyGeneration = 2 });
        var before = (await EntriesAsync()).Count;

        var error = await Assert.ThrowsAsync<RpcException>(() => RejoinAsync(worker));

        Assert.Equal(StatusCode.Unavailable, error.StatusCode);
        Assert.Equal(before, (await EntriesAsync()).Count);
    }

    [Fact]
    public async Task IssueRejoinTicket_SealedSecretDoesNotOpen_UnavailableNothingAudited()
    {
        var worker = await JoinWorkerAsync("worker-0");
        // A rotation record sealed under another secret (not this cluster's generation 1): it must not yield a key.
        using var foreign = MasterSecret.Generate();
        await _rotation.BeginAsync(RotationSeal.Seal(foreign, _next, 1), "admin", "control-plane-0");
        var before = (await EntriesAsync()).Count;

        var error = await Assert.ThrowsAsync<RpcException>(() => RejoinAsync(worker));

        Assert.Equal(StatusCode.Unavailable, error.StatusCode);
        Assert.Equal(before, (await EntriesAsync()).Count);
        Assert.Equal(0, _secrets.NextGeneration);
    }

    [Fact]
    public async Task IssueRejoinTicket_ForeignDiskDuringRotation_RefusedNoRelease()
    {
        var worker = await JoinWorkerAsync("worker-0");
        var victim = await JoinWorkerAsync("worker-1");
        await BeginAsync();
        var releases = await ReleaseCountAsync();

        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueRejoinTicket(new IssueRejoinTicketRequest { DiskUuid = victim.DiskUuid }, Call(worker)));

        Assert.Equal((StatusCode.PermissionDenied, "the disk does not belong to the caller"), (error.StatusCode, error.Status.Detail));
        Assert.Equal(releases, await ReleaseCountAsync());
    }

    [Fact]
    public async Task IssueJoinTicket_DuringPendingRotation_RegistersAtFromWithItsKeyCheck()
    {
        await BeginAsync();
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);

        var ticket = await _service.IssueJoinTicket(new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = "worker-0" }, Call(worker));

        Assert.Equal(1, (await _gate.Registry.GetAsync("worker-0"))!.KeyGeneration);
        Assert.Equal(1u, ticket.KeyGeneration);
        using var key = KeyDerivation.DeriveDiskKey(_first, worker.DiskUuid, 1);
        Assert.Equal(key.ToArray(), ticket.StateDiskKey.ToByteArray());
        Assert.Equal(_clusterId, ticket.KeyCheck.ToByteArray());
        Assert.Equal(_clusterId, KeyDerivation.DeriveClusterId(ticket.MeasurementSecret.Span, _salt));
        // It catches up like everyone else: its rotation call offers generation 2.
        var offer = await _rotationService.RotateKey(new RotateKeyRequest { DiskUuid = worker.DiskUuid }, RunningCall(worker));
        Assert.Equal(2u, offer.Generation);
    }

    [Fact]
    public async Task IssueJoinTicket_AfterCompletion_RegistersAtToClusterIdUnchanged()
    {
        await BeginAsync();
        await _rotation.CompleteAsync("admin", "control-plane-0");
        PromoteToNext();
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);

        var ticket = await _service.IssueJoinTicket(new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = "worker-0" }, Call(worker));

        Assert.Equal(2, (await _gate.Registry.GetAsync("worker-0"))!.KeyGeneration);
        Assert.Equal(2u, ticket.KeyGeneration);
        using var key = KeyDerivation.DeriveDiskKey(_next, worker.DiskUuid, 2);
        Assert.Equal(key.ToArray(), ticket.StateDiskKey.ToByteArray());
        Assert.Equal(KeyDerivation.DeriveKeyCheck(_next, _salt), ticket.KeyCheck.ToByteArray());
        Assert.NotEqual(_clusterId, ticket.KeyCheck.ToByteArray());
        // The measurement secret is still generation 1's: the cluster ID does not change.
        using var firstMeasurementSecret = KeyDerivation.DeriveMeasurementSecret(_first);
        Assert.Equal(firstMeasurementSecret.ToArray(), ticket.MeasurementSecret.ToByteArray());
        Assert.Equal(_clusterId, KeyDerivation.DeriveClusterId(ticket.MeasurementSecret.Span, _salt));
        Assert.Contains("(generation 2)", (await EntriesAsync()).Last().Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task IssueJoinTicket_RecordRegisteredAtFromAfterCompletion_NewGenerationNeverTheVoidKey()
    {
        // A join read the generation (1) while the rotation was pending and registered its node there after the
        // completion committed (or registered and was cut short, and asks again now). This control plane confirmed, so it
        // holds generation 2 as its next secret, and has not promoted yet: it still holds generation 1 as well.
        await BeginAsync();
        _secrets.SetNext(Copy(_next), 2);
        await _rotation.CompleteAsync("admin", "control-plane-0");
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);
        await _gate.Registry.RegisterAsync(RecordOf(worker, RegistryRole.Worker));

        var ticket = await _service.IssueJoinTicket(new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = "worker-0" }, Call(worker));

        // A first key of the void generation would be a disk only the void secret opens.
        Assert.Equal(2u, ticket.KeyGeneration);
        using var key = KeyDerivation.DeriveDiskKey(_next, worker.DiskUuid, 2);
        Assert.Equal(key.ToArray(), ticket.StateDiskKey.ToByteArray());
        Assert.Equal(2, (await _gate.Registry.GetAsync("worker-0"))!.KeyGeneration);
    }

    [Fact]
    public async Task IssueJoinTicket_ControlPlaneWithoutGateAfterPromotion_MasterSecretOfTheNewGeneration()
    {
        await BeginAsync();
        PromoteToNext();
        var service = new JoinApiService(_secrets, NullLoggerFactory.Instance);
        var controlPlane = Identity("control-plane-1", NodeIdentity.ControlPlaneRole);

        var ticket = await service.IssueJoinTicket(new IssueJoinTicketRequest { DiskUuid = controlPlane.DiskUuid, NodeName = controlPlane.Name, IsControlPlane = true }, Call(controlPlane));

        Assert.Equal(2u, ticket.KeyGeneration);
        Assert.Equal(_next.Key.ToArray(), ticket.MasterKey.ToByteArray());
        Assert.Equal(_next.Salt.ToArray(), ticket.MasterSalt.ToByteArray());
        Assert.Equal(_clusterId, KeyDerivation.DeriveClusterId(ticket.MeasurementSecret.Span, _salt));
    }

    [Fact]
    public async Task RotateKey_Worker_NeverCarriesTheMasterSecret()
    {
        var worker = await JoinWorkerAsync("worker-0");
        await BeginAsync();

        var offer = await _rotationService.RotateKey(new RotateKeyRequest { DiskUuid = worker.DiskUuid }, RunningCall(worker));

        Assert.Equal(2u, offer.Generation);
        Assert.True(offer.MasterKey.IsEmpty);
        Assert.True(offer.MasterSalt.IsEmpty);
        Assert.DoesNotContain("master secret", (await EntriesAsync()).Last().Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RotateKey_ControlPlane_CarriesTheSealedTargetSecret()
    {
        var controlPlane = await RegisterAsync("control-plane-1", NodeIdentity.ControlPlaneRole);
        await BeginAsync();

        var offer = await _rotationService.RotateKey(new RotateKeyRequest { DiskUuid = controlPlane.DiskUuid }, RunningCall(controlPlane));

        Assert.Equal(2u, offer.Generation);
        Assert.Equal(_next.Key.ToArray(), offer.MasterKey.ToByteArray());
        Assert.Equal(_next.Salt.ToArray(), offer.MasterSalt.ToByteArray());
        using var key = KeyDerivation.DeriveDiskKey(_next, controlPlane.DiskUuid, 2);
        Assert.Equal(key.ToArray(), offer.StateDiskKey.ToByteArray());
        Assert.Equal(KeyDerivation.DeriveKeyCheck(_next, _salt), offer.KeyCheck.ToByteArray());
        var released = (await EntriesAsync()).Last();
        Assert.Equal((AuditKind.Release, "control-plane-1"), (released.Kind, released.Node));
        Assert.Contains("master secret", released.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RotateKey_WorkerAskingWithAControlPlanesDisk_RefusedNoRelease()
    {
        var worker = await JoinWorkerAsync("worker-0");
        var controlPlane = await RegisterAsync("control-plane-1", NodeIdentity.ControlPlaneRole);
        await BeginAsync();
        var releases = await ReleaseCountAsync();

        var error = await Assert.ThrowsAsync<RpcException>(() => _rotationService.RotateKey(new RotateKeyRequest { DiskUuid = controlPlane.DiskUuid }, RunningCall(worker)));

        Assert.Equal(StatusCode.PermissionDenied, error.StatusCode);
        Assert.Equal(releases, await ReleaseCountAsync());
    }

    [Fact]
    public async Task RotateKey_WorkerIdentityWithAControlPlaneRecord_RefusedNoMasterSecret()
    {
        // The registry says control plane, the certificate says worker (or the reverse): both must agree.
        var worker = Identity("node-0", NodeIdentity.WorkerRole);
        await _gate.Registry.RegisterAsync(RecordOf(worker, RegistryRole.ControlPlane));
        var controlPlane = Identity("node-1", NodeIdentity.ControlPlaneRole);
        await _gate.Registry.RegisterAsync(RecordOf(controlPlane, RegistryRole.Worker));
        await BeginAsync();
        var releases = await ReleaseCountAsync();

        var asWorker = await Assert.ThrowsAsync<RpcException>(() => _rotationService.RotateKey(new RotateKeyRequest { DiskUuid = worker.DiskUuid }, RunningCall(worker)));
        var asControlPlane = await Assert.ThrowsAsync<RpcException>(() => _rotationService.RotateKey(new RotateKeyRequest { DiskUuid = controlPlane.DiskUuid }, RunningCall(controlPlane)));

        Assert.Equal((StatusCode.PermissionDenied, StatusCode.PermissionDenied), (asWorker.StatusCode, asControlPlane.StatusCode));
        Assert.Equal(releases, await ReleaseCountAsync());
    }

    private async Task BeginAsync() =>
        await _rotation.BeginAsync(RotationSeal.Seal(_first, _next, 1), "admin", "control-plane-0");

    /// <summary>What a control plane does at completion: it holds the next secret and promotes it.</summary>
    private void PromoteToNext()
    {
        if (_secrets.NextGeneration != 2)
        {
            _secrets.SetNext(Copy(_next), 2);
        }
        Assert.True(_secrets.Promote());
        Assert.Equal(2, _secrets.Generation);
    }

    private async Task SetGenerationKeyAsync(int generation)
    {
        var put = new Etcdserverpb.PutRequest
        {
            Key = Google.Protobuf.ByteString.CopyFromUtf8(KeyRotation.GenerationKey),
            Value = Google.Protobuf.ByteString.CopyFromUtf8(generation.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        };
        await _connection.CallAsync((c, d, ct) => c.PutAsync(put, deadline: d, cancellationToken: ct), default);
    }

    private async Task<NodeIdentity> JoinWorkerAsync(string name)
    {
        var worker = Identity(name, NodeIdentity.WorkerRole);
        await _service.IssueJoinTicket(new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = name }, Call(worker));
        return worker;
    }

    private async Task<NodeIdentity> RegisterAsync(string name, string role)
    {
        var identity = Identity(name, role);
        await _gate.Registry.RegisterAsync(RecordOf(identity, role == NodeIdentity.ControlPlaneRole ? RegistryRole.ControlPlane : RegistryRole.Worker));
        return identity;
    }

    private static NodeRecord RecordOf(NodeIdentity identity, RegistryRole role) =>
        new(identity.Name, role, Guid.Parse(identity.DiskUuid), Convert.FromHexString(identity.CertificateFingerprint), DateTimeOffset.UtcNow);

    private Task<IssueRejoinTicketResponse> RejoinAsync(NodeIdentity identity) =>
        _service.IssueRejoinTicket(new IssueRejoinTicketRequest { DiskUuid = identity.DiskUuid }, Call(identity));

    /// <summary>The disk key and measurement secret of <paramref name="generation"/>, derived here from the test's own copy of its secret.</summary>
    private static void AssertKeys(Google.Protobuf.ByteString diskKey, Google.Protobuf.ByteString measurementSecret, MasterSecret master, string diskUuid, int generation)
    {
        using var expectedKey = KeyDerivation.DeriveDiskKey(master, diskUuid, generation);
        using var expectedSecret = KeyDerivation.DeriveMeasurementSecret(master);
        Assert.Equal(expectedKey.ToArray(), diskKey.ToByteArray());
        Assert.Equal(expectedSecret.ToArray(), measurementSecret.ToByteArray());
    }

    private static void AssertNoNext(IssueRejoinTicketResponse ticket) =>
        Assert.Equal((0u, 0, 0), (ticket.NextKeyGeneration, ticket.NextStateDiskKey.Length, ticket.NextMeasurementSecret.Length));

    private async Task<int> ReleaseCountAsync() => (await EntriesAsync()).Count(e => e.Kind == AuditKind.Release);

    private async Task<List<AuditEntry>> EntriesAsync()
    {
        var entries = new List<AuditEntry>();
        await foreach (var entry in _gate.Audit.ReadAsync())
        {
            entries.Add(entry);
        }
        return entries;
    }

    private static MasterSecret Copy(MasterSecret secret) => MasterSecret.FromBytes(secret.Key, secret.Salt);

    private static NodeIdentity Identity(string name, string role) =>
        new(name, role, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("certificate-of-" + name))), Authority);

    /// <summary>A peer as the join listener attests it (PCR 15 = 0, not checked by the service).</summary>
    private static FakeCallContext Call(NodeIdentity identity) =>
        new(new AtlsPeer(new AttestationFacts(AttestationVariant.Simulated, new Dictionary<int, byte[]>(), "key-of-" + identity.Name, identity), [], "127.0.0.9:40000"));

    /// <summary>A running node of this cluster as the rotation listener attests it: PCR 15 carries the cluster ID.</summary>
    private FakeCallContext RunningCall(NodeIdentity identity)
    {
        var bank = new SimulatedPcrBank();
        bank.MeasureEvent(Measurements.ClusterIdIndex, _clusterId);
        var facts = new AttestationFacts(AttestationVariant.Simulated, new Dictionary<int, byte[]> { [Measurements.ClusterIdIndex] = bank.Read(Measurements.ClusterIdIndex) }, "key-of-" + identity.Name, identity);
        return new(new AtlsPeer(facts, [], "127.0.0.9:40000"));
    }
}
