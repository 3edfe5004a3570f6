using System.Security.Cryptography;
using System.Text;
using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Attestation.Identities;
using Asterism.ControlPlane;
using Asterism.ControlPlane.Tests;
using Asterism.Crypto;
using Asterism.JoinService;
using Asterism.Node.Tests.Fakes;
using Asterism.Protocol.Join;
using Asterism.Tests;
using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Node.Tests.JoinService;

/// <summary>
/// The JoinService with its <see cref="KeyReleaseGate"/> over a real one-member etcd (127.77.x.y, killed by PID): each
/// attack a node of the cluster could try against the registry is refused with PermissionDenied, leaves a
/// <see cref="AuditKind.RefusedRelease"/> entry and releases no key; without a quorum nothing is released either.
/// </summary>
public sealed class KeyReleaseGateTests : IAsyncLifetime
{
    private const string Authority = "ca-fingerprint";
    private readonly ClusterSecrets _secrets = new(MasterSecret.Generate(), new byte[KeyDerivation.MeasurementSaltLength],
        new AttestationPolicy { Variant = AttestationVariant.Simulated, Measurements = Measurements.Empty });
    private TestCluster _cluster = null!;
    private EtcdConnection _connection = null!;
    private KeyReleaseGate _gate = null!;
    private JoinApiService _service = null!;

    public async Task InitializeAsync()
    {
        _cluster = TestCluster.Create();
        await _cluster.StartFirstAsync();
        _connection = _cluster.Connect(TimeSpan.FromSeconds(2));
        _gate = new KeyReleaseGate(_connection, Path.Combine(_cluster.Root, "ca"), NullLoggerFactory.Instance);
        _service = new JoinApiService(_secrets, NullLoggerFactory.Instance, _gate);
    }

    public async Task DisposeAsync()
    {
        _gate.Dispose();
        _connection.Dispose();
        await _cluster.DisposeAsync();
        _secrets.Dispose();
    }

    [Fact]
    public async Task IssueRejoinTicket_RegisteredWorker_ReleasedAndAuditedBeforeTheKey()
    {
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);
        await _service.IssueJoinTicket(new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = "worker-0" }, Call(worker));

        var ticket = await _service.IssueRejoinTicket(new IssueRejoinTicketRequest { DiskUuid = worker.DiskUuid }, Call(worker));

        using var master = _secrets.ForGeneration(1)!;
        using var key = KeyDerivation.DeriveDiskKey(master, worker.DiskUuid);
        Assert.Equal(key.ToArray(), ticket.StateDiskKey.ToByteArray());
        var entries = await EntriesAsync();
        Assert.Equal([AuditKind.Release, AuditKind.Release], entries.Select(e => e.Kind));
        Assert.All(entries, e => Assert.Equal("worker-0", e.Node));
        Assert.True((await _gate.Audit.VerifyAsync()).Intact);
    }

    [Fact]
    public async Task IssueRejoinTicket_RevokedNode_PermissionDeniedAndAudited()
    {
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);
        await _service.IssueJoinTicket(new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = "worker-0" }, Call(worker));
        await _gate.Registry.RevokeAsync("worker-0", DateTimeOffset.UtcNow);

        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueRejoinTicket(new IssueRejoinTicketRequest { DiskUuid = worker.DiskUuid }, Call(worker)));

        await AssertRefusedAsync(error, "worker-0", "revoked");
    }

    [Fact]
    public async Task IssueRejoinTicket_UnregisteredNode_PermissionDeniedAndAudited()
    {
        var stranger = Identity("worker-7", NodeIdentity.WorkerRole);

        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueRejoinTicket(new IssueRejoinTicketRequest { DiskUuid = stranger.DiskUuid }, Call(stranger)));

        await AssertRefusedAsync(error, "worker-7", "not in the node registry");
    }

    [Fact]
    public async Task IssueRejoinTicket_SameNameAnotherCertifiedIdentity_PermissionDeniedAndAudited()
    {
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);
        await _service.IssueJoinTicket(new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = "worker-0" }, Call(worker));
        // A second instance the provider certified under the same name (a replaced VM, or an imitation): its
        // certificate is not the one registered, although the disk UUID it asks for is the name's.
        var impostor = Identity("worker-0", NodeIdentity.WorkerRole, certificate: "another-certificate");

        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueRejoinTicket(new IssueRejoinTicketRequest { DiskUuid = impostor.DiskUuid }, Call(impostor)));

        await AssertRefusedAsync(error, "worker-0", "certified identity differs");
    }

    [Fact]
    public async Task IssueRejoinTicket_DiskUuidDiffersFromTheRecord_PermissionDeniedAndAudited()
    {
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);
        // The record names another disk than the one the identity asks for (an entry written under an earlier
        // authority, or edited): the registry's word wins over the stateless UUID check.
        await _gate.Registry.RegisterAsync(new NodeRecord("worker-0", Asterism.ControlPlane.NodeRole.Worker, Guid.NewGuid(),
            Convert.FromHexString(worker.CertificateFingerprint), DateTimeOffset.UtcNow));

        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueRejoinTicket(new IssueRejoinTicketRequest { DiskUuid = worker.DiskUuid }, Call(worker)));

        await AssertRefusedAsync(error, "worker-0", "disk UUID differs");
    }

    [Fact]
    public async Task IssueJoinTicket_RevokedNodeJoinsAgain_PermissionDeniedAndAudited()
    {
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);
        await _service.IssueJoinTicket(new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = "worker-0" }, Call(worker));
        await _gate.Registry.RevokeAsync("worker-0", DateTimeOffset.UtcNow);

        // A revoked node that wiped its disk and asks for a first-boot ticket: still the registered name, still refused.
        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueJoinTicket(
            new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = "worker-0" }, Call(worker)));

        await AssertRefusedAsync(error, "worker-0", "revoked");
    }

    [Fact]
    public async Task IssueRejoinTicket_RevokedBetweenReadAndAudit_PermissionDeniedNoRelease()
    {
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);
        await _service.IssueJoinTicket(new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = "worker-0" }, Call(worker));
        // `node revoke` lands after the gate read the record (not revoked) and before it appends the Release entry.
        var revoked = 0;
        _gate.BeforeReleaseAudit = async (name, ct) =>
        {
            if (Interlocked.Exchange(ref revoked, 1) == 0)
            {
                await _gate.Registry.RevokeAsync(name, DateTimeOffset.UtcNow, ct);
            }
        };

        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueRejoinTicket(new IssueRejoinTicketRequest { DiskUuid = worker.DiskUuid }, Call(worker)));

        await AssertRefusedAsync(error, "worker-0", "revoked");
        Assert.Equal([AuditKind.Release, AuditKind.RefusedRelease], (await EntriesAsync()).Select(e => e.Kind));
    }

    [Fact]
    public async Task IssueJoinTicket_WorkerRevokedBetweenReadAndAudit_PermissionDeniedNoRelease()
    {
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);
        _gate.BeforeReleaseAudit = (name, ct) => _gate.Registry.RevokeAsync(name, DateTimeOffset.UtcNow, ct);

        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueJoinTicket(
            new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = "worker-0" }, Call(worker)));

        await AssertRefusedAsync(error, "worker-0", "revoked");
        Assert.DoesNotContain(AuditKind.Release, (await EntriesAsync()).Select(e => e.Kind));
    }

    [Fact]
    public async Task IssueRejoinTicket_RecordChangedButNotRevokedBetweenReadAndAudit_DecidedAgainAndReleased()
    {
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);
        await _service.IssueJoinTicket(new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = "worker-0" }, Call(worker));
        var changes = 0;
        _gate.BeforeReleaseAudit = async (name, ct) =>
        {
            if (Interlocked.Increment(ref changes) == 1)
            {
                await _gate.Registry.UpdateAsync(name, r => r with { JoinedAt = r.JoinedAt.AddSeconds(1) }, ct);
            }
        };

        var ticket = await _service.IssueRejoinTicket(new IssueRejoinTicketRequest { DiskUuid = worker.DiskUuid }, Call(worker));

        Assert.False(ticket.StateDiskKey.IsEmpty);
        Assert.Equal(2, changes);
        Assert.Equal([AuditKind.Release, AuditKind.Release], (await EntriesAsync()).Select(e => e.Kind));
    }

    [Fact]
    public async Task IssueRejoinTicket_RecordChangesBeforeEveryAppend_GivesUpUnavailableNoRelease()
    {
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);
        await _service.IssueJoinTicket(new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = "worker-0" }, Call(worker));
        // Whoever can write the record changes it (without revoking) before every conditional append: the re-read loop
        // must end (bounded attempts), fail closed with a retryable error, and release nothing.
        var changes = 0;
        _gate.BeforeReleaseAudit = async (name, ct) =>
        {
            Interlocked.Increment(ref changes);
            await _gate.Registry.UpdateAsync(name, r => r with { JoinedAt = r.JoinedAt.AddSeconds(1) }, ct);
        };

        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueRejoinTicket(new IssueRejoinTicketRequest { DiskUuid = worker.DiskUuid }, Call(worker)));

        Assert.Equal((StatusCode.Unavailable, "control plane cannot release keys now"), (error.StatusCode, error.Status.Detail));
        Assert.InRange(changes, 2, 16);
        Assert.Equal([AuditKind.Release], (await EntriesAsync()).Select(e => e.Kind));
        Assert.True((await _gate.Audit.VerifyAsync()).Intact);
    }

    [Fact]
    public async Task IssueJoinTicket_ControlPlaneFailsAfterTheGate_JoinLockAndLearnerReleased()
    {
        var controlPlane = Identity("control-plane-1", NodeIdentity.ControlPlaneRole);
        _gate.PeerAddressResolver = (_, _) => Task.FromResult<string?>(_cluster.Address(1).ToString());
        // A service whose secrets vanish right after the gate decided: the response cannot be built, the call throws
        // between the gate and the point where the response takes over the learner and the join lock.
        var doomed = new ClusterSecrets(MasterSecret.Generate(), new byte[KeyDerivation.MeasurementSaltLength],
            new AttestationPolicy { Variant = AttestationVariant.Simulated, Measurements = Measurements.Empty });
        var service = new JoinApiService(doomed, NullLoggerFactory.Instance, _gate);
        _gate.BeforeReleaseAudit = (_, _) =>
        {
            doomed.Dispose();
            return Task.CompletedTask;
        };

        await Assert.ThrowsAsync<ObjectDisposedException>(() => service.IssueJoinTicket(
            new IssueJoinTicketRequest { DiskUuid = controlPlane.DiskUuid, NodeName = controlPlane.Name, IsControlPlane = true }, Call(controlPlane)));

        await Poll.RequireAsync(() => !_gate.ControlPlaneJoinInProgress, Poll.Hang, "the control-plane join lock to be released");
        var members = await new EtcdMembership(_connection).ListAsync();
        Assert.DoesNotContain(members, m => m.Name == controlPlane.Name);
    }

    [Fact]
    public async Task IssueRejoinTicket_NoQuorum_UnavailableNoKey()
    {
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);
        await _service.IssueJoinTicket(new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = "worker-0" }, Call(worker));
        await _cluster.Members[0]!.KillAsync();

        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueRejoinTicket(new IssueRejoinTicketRequest { DiskUuid = worker.DiskUuid }, Call(worker)));

        Assert.Equal((StatusCode.Unavailable, ControlPlaneException.NoQuorumMessage), (error.StatusCode, error.Status.Detail));
    }

    private async Task AssertRefusedAsync(RpcException error, string node, string reason)
    {
        Assert.Equal((StatusCode.PermissionDenied, "the node registry refuses this node"), (error.StatusCode, error.Status.Detail));
        var refused = (await EntriesAsync()).Last();
        Assert.Equal((AuditKind.RefusedRelease, node), (refused.Kind, refused.Node));
        Assert.Contains(reason, refused.Detail, StringComparison.Ordinal);
        Assert.True((await _gate.Audit.VerifyAsync()).Intact);
    }

    private async Task<List<AuditEntry>> EntriesAsync()
    {
        var entries = new List<AuditEntry>();
        await foreach (var entry in _gate.Audit.ReadAsync())
        {
            entries.Add(entry);
        }
        return entries;
    }

    /// <summary>A certified identity whose fingerprint is hex, as the aTLS layer reports it (SHA-256 of the certificate).</summary>
    private static NodeIdentity Identity(string name, string role, string? certificate = null) =>
        new(name, role, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(certificate ?? "certificate-of-" + name))), Authority);

    private static FakeCallContext Call(NodeIdentity identity) =>
        new(new AtlsPeer(new AttestationFacts(AttestationVariant.Simulated, new Dictionary<int, byte[]>(), "key-of-" + identity.Name, identity), [], "127.0.0.9:40000"));
}
