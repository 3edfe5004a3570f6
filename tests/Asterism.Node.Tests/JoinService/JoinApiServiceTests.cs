using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Attestation.Identities;
using Asterism.Crypto;
using Asterism.JoinService;
using Asterism.Node.Tests.Fakes;
using Asterism.Protocol.Join;
using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Node.Tests.JoinService;

/// <summary>
/// The JoinService's decisions, given the peer the aTLS layer attested: who gets which key is decided by the certified
/// identity, never by the request. Each refusal is an attack a node of the cluster could try.
/// </summary>
public sealed class JoinApiServiceTests : IDisposable
{
    private const string Authority = "ca-fingerprint";
    private readonly ClusterSecrets _secrets = new(MasterSecret.Generate(), new byte[KeyDerivation.MeasurementSaltLength],
        new AttestationPolicy { Variant = AttestationVariant.Simulated, Measurements = Measurements.Empty });
    private readonly JoinApiService _service;

    public JoinApiServiceTests() => _service = new JoinApiService(_secrets, NullLoggerFactory.Instance);

    public void Dispose() => _secrets.Dispose();

    [Fact]
    public async Task IssueRejoinTicket_OwnerOfTheDisk_GetsItsDerivedKeys()
    {
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);

        var ticket = await _service.IssueRejoinTicket(new IssueRejoinTicketRequest { DiskUuid = worker.DiskUuid }, Call(worker));

        using var master = _secrets.ForGeneration(1)!;
        using var key = KeyDerivation.DeriveDiskKey(master, worker.DiskUuid);
        using var secret = KeyDerivation.DeriveMeasurementSecret(master);
        Assert.Equal(key.ToArray(), ticket.StateDiskKey.ToByteArray());
        Assert.Equal(secret.ToArray(), ticket.MeasurementSecret.ToByteArray());
    }

    [Fact]
    public async Task IssueRejoinTicket_AnotherNodesDisk_PermissionDenied()
    {
        var attacker = Identity("worker-1", NodeIdentity.WorkerRole);
        var victim = Identity("control-plane-0", NodeIdentity.ControlPlaneRole);

        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueRejoinTicket(new IssueRejoinTicketRequest { DiskUuid = victim.DiskUuid }, Call(attacker)));

        Assert.Equal((StatusCode.PermissionDenied, "the disk does not belong to the caller"), (error.StatusCode, error.Status.Detail));
    }

    [Fact]
    public async Task IssueRejoinTicket_NoAttestedPeer_Unauthenticated()
    {
        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueRejoinTicket(
            new IssueRejoinTicketRequest { DiskUuid = Identity("worker-0", NodeIdentity.WorkerRole).DiskUuid }, new FakeCallContext()));

        Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
    }

    [Fact]
    public async Task IssueRejoinTicket_AttestedKeyWithoutCertifiedIdentity_PermissionDenied()
    {
        var peer = new AtlsPeer(new AttestationFacts(AttestationVariant.Simulated, new Dictionary<int, byte[]>(), "pinned-key"), [], "127.0.0.9:40000");

        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueRejoinTicket(
            new IssueRejoinTicketRequest { DiskUuid = Identity("worker-0", NodeIdentity.WorkerRole).DiskUuid }, new FakeCallContext(peer)));

        Assert.Equal(StatusCode.PermissionDenied, error.StatusCode);
    }

    [Fact]
    public async Task IssueRejoinTicket_UppercaseUuid_InvalidArgument()
    {
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);

        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueRejoinTicket(
            new IssueRejoinTicketRequest { DiskUuid = worker.DiskUuid.ToUpperInvariant() }, Call(worker)));

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
    }

    [Fact]
    public async Task IssueJoinTicket_Worker_GetsDiskKeysButNoControlPlaneMaterial()
    {
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);

        var ticket = await _service.IssueJoinTicket(new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = "worker-0" }, Call(worker));

        Assert.Equal(KeyDerivation.KeyLength, ticket.StateDiskKey.Length);
        Assert.Equal(_secrets.MeasurementSalt, ticket.MeasurementSalt.ToByteArray());
        Assert.True(ticket.MasterKey.IsEmpty);
        Assert.True(ticket.MasterSalt.IsEmpty);
        Assert.True(ticket.AttestationConfig.IsEmpty);
    }

    [Fact]
    public async Task IssueJoinTicket_WorkerClaimsControlPlane_PermissionDenied()
    {
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);

        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueJoinTicket(
            new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, IsControlPlane = true, NodeName = "worker-0" }, Call(worker)));

        Assert.Equal(StatusCode.PermissionDenied, error.StatusCode);
    }

    [Fact]
    public async Task IssueJoinTicket_NameOfAnotherNode_PermissionDenied()
    {
        var worker = Identity("worker-0", NodeIdentity.WorkerRole);

        var error = await Assert.ThrowsAsync<RpcException>(() => _service.IssueJoinTicket(
            new IssueJoinTicketRequest { DiskUuid = worker.DiskUuid, NodeName = "worker-1" }, Call(worker)));

        Assert.Equal(StatusCode.PermissionDenied, error.StatusCode);
    }

    [Fact]
    public async Task IssueJoinTicket_ControlPlane_GetsMasterSecretAndPolicy()
    {
        var controlPlane = Identity("control-plane-1", NodeIdentity.ControlPlaneRole);

        var ticket = await _service.IssueJoinTicket(
            new IssueJoinTicketRequest { DiskUuid = controlPlane.DiskUuid, IsControlPlane = true, NodeName = "control-plane-1" }, Call(controlPlane));

        using var master = _secrets.ForGeneration(1)!;
        Assert.Equal(master.Key.ToArray(), ticket.MasterKey.ToByteArray());
        Assert.Equal(master.Salt.ToArray(), ticket.MasterSalt.ToByteArray());
        Assert.Equal(AttestationVariant.Simulated, AttestationPolicy.FromJson(ticket.AttestationConfig.Span).Variant);
    }

    private static NodeIdentity Identity(string name, string role) => new(name, role, "certificate-of-" + name, Authority);

    private static FakeCallContext Call(NodeIdentity identity) =>
        new(new AtlsPeer(new AttestationFacts(AttestationVariant.Simulated, new Dictionary<int, byte[]>(), "key-of-" + identity.Name, identity), [], "127.0.0.9:40000"));
}
