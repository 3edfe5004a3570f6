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

namespace Asterism.Node.Tests.JoinService;

/// <summary>
/// <see cref="RotationGate"/> over a real one-member etcd: a registered running node gets its next-generation disk key
/// once (audited) and confirms; a revoked node, another certified identity under the same name, a foreign disk and a
/// node whose PCR 15 is zero (no keys in this boot) or another cluster's are refused with PermissionDenied, audited,
/// and get no key.
/// </summary>
public sealed class RotationGateTests : IAsyncLifetime
{
    private const string Authority = "ca-fingerprint";
    private static readonly byte[] ClusterId = SHA256.HashData(Encoding.UTF8.GetBytes("cluster"));
    private readonly ClusterSecrets _secrets = new(MasterSecret.Generate(), new byte[KeyDerivation.MeasurementSaltLength],
        new AttestationPolicy { Variant = AttestationVariant.Simulated, Measurements = Measurements.Empty });
    private readonly MasterSecret _next = MasterSecret.Generate();
    private TestCluster _cluster = null!;
    private EtcdConnection _connection = null!;
    private RotationGate _gate = null!;
    private NodeRegistry _registry = null!;
    private KeyRotation _rotation = null!;

    public async Task InitializeAsync()
    {
        _cluster = TestCluster.Create();
        await _cluster.StartFirstAsync();
        _connection = _cluster.Connect(TimeSpan.FromSeconds(2));
        _gate = new RotationGate(_connection, _secrets, ClusterId, NullLoggerFactory.Instance);
        _registry = new NodeRegistry(_connection);
        _rotation = new KeyRotation(_connection);
    }

    public async Task DisposeAsync()
    {
        _connection.Dispose();
        await _cluster.DisposeAsync();
        _secrets.Dispose();
        _next.Dispose();
    }

    [Fact]
    public async Task Offer_RegisteredRunningNode_NextGenerationKeyAuditedThenConfirmed()
    {
        var worker = await RegisterAsync("worker-0", NodeIdentity.WorkerRole);
        Assert.Null(await _gate.OfferAsync(Facts(worker), worker.DiskUuid, default));
        await BeginAsync();

        using (var offer = await _gate.OfferAsync(Facts(worker), worker.DiskUuid, default))
        {
            Assert.NotNull(offer);
            Assert.Equal(2, offer.Generation);
            using var expected = KeyDerivation.DeriveDiskKey(_next, worker.DiskUuid, 2);
            Assert.Equal(expected.ToArray(), offer.DiskKey.ToArray());
            using var current = _secrets.ForGeneration(1)!;
            using var old = KeyDerivation.DeriveDiskKey(current, worker.DiskUuid);
            using var sameSecretGeneration1 = KeyDerivation.DeriveDiskKey(_next, worker.DiskUuid);
            Assert.NotEqual(old.ToArray(), offer.DiskKey.ToArray());
            Assert.NotEqual(sameSecretGeneration1.ToArray(), offer.DiskKey.ToArray());
        }
        var released = (await EntriesAsync()).Last();
        Assert.Equal((AuditKind.Release, "worker-0"), (released.Kind, released.Node));
        Assert.Contains("generation 2", released.Detail, StringComparison.Ordinal);

        Assert.Equal(2, await _gate.ConfirmAsync(Facts(worker), worker.DiskUuid, 2, default));
        Assert.Null(await _gate.OfferAsync(Facts(worker), worker.DiskUuid, default));
        Assert.Empty(await _rotation.BehindAsync(2));
        Assert.True((await new AuditLog(_connection).VerifyAsync()).Intact);
    }

    [Fact]
    public async Task Offer_RevokedNode_PermissionDeniedAndAudited()
    {
        var worker = await RegisterAsync("worker-0", NodeIdentity.WorkerRole);
        await BeginAsync();
        await _registry.RevokeAsync("worker-0", DateTimeOffset.UtcNow);

        await AssertRefusedAsync(() => _gate.OfferAsync(Facts(worker), worker.DiskUuid, default), "worker-0", "revoked");
        // The same refusal again within the window is coalesced (RefusalAuditLimiter): refused, no second entry.
        await AssertRefusedAsync(() => _gate.ConfirmAsync(Facts(worker), worker.DiskUuid, 2, default), "worker-0", "revoked", coalesced: true);
    }

    [Fact]
    public async Task Offer_SameNameAnotherCertifiedIdentity_PermissionDeniedAndAudited()
    {
        await RegisterAsync("worker-0", NodeIdentity.WorkerRole);
        await BeginAsync();
        var impostor = Identity("worker-0", NodeIdentity.WorkerRole, certificate: "another-certificate");

        await AssertRefusedAsync(() => _gate.OfferAsync(Facts(impostor), impostor.DiskUuid, default), "worker-0", "certified identity differs");
    }

    [Fact]
    public async Task Offer_AnotherNodesDisk_PermissionDeniedAndAudited()
    {
        var worker = await RegisterAsync("worker-0", NodeIdentity.WorkerRole);
        var other = await RegisterAsync("worker-1", NodeIdentity.WorkerRole);
        await BeginAsync();

        await AssertRefusedAsync(() => _gate.OfferAsync(Facts(worker), other.DiskUuid, default), "worker-0", "disk UUID is not the one");
    }

    [Fact]
    public async Task Offer_Pcr15ZeroOrAnotherClustersValue_PermissionDeniedAndAudited()
    {
        var worker = await RegisterAsync("worker-0", NodeIdentity.WorkerRole);
        await BeginAsync();

        // PCR 15 = 0: a node without keys in this boot; it must come through rejoin (PCR 15 = 0 policy), not here.
        await AssertRefusedAsync(() => _gate.OfferAsync(Facts(worker, new byte[32]), worker.DiskUuid, default), "worker-0", "PCR 15");
        var otherCluster = (byte[])ClusterId.Clone();
        otherCluster[0] ^= 1;
        await AssertRefusedAsync(() => _gate.OfferAsync(Facts(worker, Pcr15Of(otherCluster)), worker.DiskUuid, default), "worker-0", "PCR 15", coalesced: true);
        await AssertRefusedAsync(() => _gate.ConfirmAsync(Facts(worker, new byte[32]), worker.DiskUuid, 2, default), "worker-0", "PCR 15", coalesced: true);
        Assert.Equal(1, (await _registry.GetAsync("worker-0"))!.KeyGeneration);
    }

    [Fact]
    public void RecordRefusal_RoleDiffers_Refused()
    {
        var worker = Identity("node-0", NodeIdentity.WorkerRole);
        var record = new NodeRecord("node-0", Asterism.ControlPlane.NodeRole.ControlPlane, Guid.Parse(worker.DiskUuid),
            Convert.FromHexString(worker.CertificateFingerprint), DateTimeOffset.UtcNow);
        Assert.Equal("role differs from the registry", RotationGate.RecordRefusal(record, worker, worker.DiskUuid));
        Assert.Null(RotationGate.RecordRefusal(record with { Role = Asterism.ControlPlane.NodeRole.Worker }, worker, worker.DiskUuid));
        Assert.Equal("not in the node registry", RotationGate.RecordRefusal(null, worker, worker.DiskUuid));
    }

    [Fact]
    public async Task RotateKey_AskThenConfirmOverTheService_KeyOnceThenNothingToDo()
    {
        var worker = await RegisterAsync("worker-0", NodeIdentity.WorkerRole);
        await BeginAsync();
        var service = new RotationApiService(_gate, NullLoggerFactory.Instance);

        var offer = await service.RotateKey(new RotateKeyRequest { DiskUuid = worker.DiskUuid }, Call(worker));
        using var expected = KeyDerivation.DeriveDiskKey(_next, worker.DiskUuid, 2);
        Assert.Equal(2u, offer.Generation);
        Assert.Equal(expected.ToArray(), offer.StateDiskKey.ToByteArray());
        Assert.Equal(32, offer.KeyCheck.Length);
        Assert.Equal(2u, (await service.RotateKey(new RotateKeyRequest { DiskUuid = worker.DiskUuid, ConfirmGeneration = 2 }, Call(worker))).Generation);
        var after = await service.RotateKey(new RotateKeyRequest { DiskUuid = worker.DiskUuid }, Call(worker));
        Assert.Equal((0u, 0), (after.Generation, after.StateDiskKey.Length));
    }

    [Fact]
    public async Task RotateKey_UnattestedOrUncertifiedCaller_Refused()
    {
        var worker = await RegisterAsync("worker-0", NodeIdentity.WorkerRole);
        await BeginAsync();
        var service = new RotationApiService(_gate, NullLoggerFactory.Instance);

        var unattested = await Assert.ThrowsAsync<RpcException>(() => service.RotateKey(new RotateKeyRequest { DiskUuid = worker.DiskUuid }, new FakeCallContext()));
        Assert.Equal(StatusCode.Unauthenticated, unattested.StatusCode);
        var uncertified = new FakeCallContext(new AtlsPeer(Facts(worker) with { Identity = null }, [], "127.0.0.9:40000"));
        var error = await Assert.ThrowsAsync<RpcException>(() => service.RotateKey(new RotateKeyRequest { DiskUuid = worker.DiskUuid }, uncertified));
        Assert.Equal(StatusCode.PermissionDenied, error.StatusCode);
        Assert.DoesNotContain(await EntriesAsync(), e => e.Kind == AuditKind.Release);
    }

    private static FakeCallContext Call(NodeIdentity identity) => new(new AtlsPeer(Facts(identity), [], "127.0.0.9:40000"));

    private async Task BeginAsync()
    {
        using var current = _secrets.ForGeneration(1)!;
        await _rotation.BeginAsync(RotationSeal.Seal(current, _next, 1), "admin", "control-plane-0");
    }

    private async Task<NodeIdentity> RegisterAsync(string name, string role)
    {
        var identity = Identity(name, role);
        await _registry.RegisterAsync(new NodeRecord(name, role == NodeIdentity.ControlPlaneRole ? Asterism.ControlPlane.NodeRole.ControlPlane : Asterism.ControlPlane.NodeRole.Worker,
            Guid.Parse(identity.DiskUuid), Convert.FromHexString(identity.CertificateFingerprint), DateTimeOffset.UtcNow));
        return identity;
    }

    private async Task AssertRefusedAsync(Func<Task> call, string node, string reason, bool coalesced = false)
    {
        var before = (await EntriesAsync()).Count;
        var error = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal((StatusCode.PermissionDenied, "the node registry refuses this node"), (error.StatusCode, error.Status.Detail));
        var entries = await EntriesAsync();
        if (coalesced)
        {
            // A repeat of a refusal already audited in this window: no entry at all, so certainly no Release entry.
            Assert.Equal(before, entries.Count);
            return;
        }
        // Exactly one entry more, and it is the refusal: no Release entry, so no key left.
        Assert.Equal(before + 1, entries.Count);
        Assert.Equal((AuditKind.RefusedRelease, node), (entries[^1].Kind, entries[^1].Node));
        Assert.Contains(reason, entries[^1].Detail, StringComparison.Ordinal);
    }

    private async Task<List<AuditEntry>> EntriesAsync()
    {
        var entries = new List<AuditEntry>();
        await foreach (var entry in new AuditLog(_connection).ReadAsync())
        {
            entries.Add(entry);
        }
        return entries;
    }

    private static byte[] Pcr15Of(byte[] clusterId)
    {
        var bank = new SimulatedPcrBank();
        bank.MeasureEvent(Measurements.ClusterIdIndex, clusterId);
        return bank.Read(Measurements.ClusterIdIndex);
    }

    private static AttestationFacts Facts(NodeIdentity identity, byte[]? pcr15 = null) =>
        new(AttestationVariant.Simulated, new Dictionary<int, byte[]> { [Measurements.ClusterIdIndex] = pcr15 ?? Pcr15Of(ClusterId) }, "key-of-" + identity.Name, identity);

    private static NodeIdentity Identity(string name, string role, string? certificate = null) =>
        new(name, role, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(certificate ?? "certificate-of-" + name))), Authority);
}
