using System.Security.Cryptography;
using Asterism.Attestation.Identities;
using Asterism.ControlPlane;
using Asterism.Crypto;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace Asterism.JoinService;

/// <summary>What a joining control plane needs for its etcd member: the cluster CA (PEM) and the membership to start with.</summary>
public sealed class ControlPlaneTicket(byte[] caKeyPem, byte[] caCertificatePem, IReadOnlyList<string> initialCluster) : IDisposable
{
    /// <summary>The CA's PKCS#8 key as PEM; the caller zeroes it once sent (<see cref="Dispose"/>).</summary>
    public byte[] CaKeyPem { get; } = caKeyPem;

    /// <summary>The CA certificate as PEM.</summary>
    public byte[] CaCertificatePem { get; } = caCertificatePem;

    /// <summary>"name=https://address:2380" per member, the joiner included.</summary>
    public IReadOnlyList<string> InitialCluster { get; } = initialCluster;

    /// <inheritdoc />
    public override string ToString() => "[redacted]";

    /// <inheritdoc />
    public void Dispose() => CryptographicOperations.ZeroMemory(CaKeyPem);
}

/// <summary>
/// The control plane's say over every key release (issue #15 items 2–3): before a disk key leaves the JoinService the
/// node registry in etcd is read linearizably, a revoked node or one whose certified identity or disk UUID differs
/// from its record is refused (and a <see cref="AuditKind.RefusedRelease"/> entry appended), and a
/// <see cref="AuditKind.Release"/> entry is appended — no audit entry, no key. Which master-secret generations a
/// release may carry is decided here too, from the record's generation and a pending rotation read with it (issue #16
/// item 4), and named in the entry. A first join registers the node at the cluster's current generation. A
/// control plane joining is added to etcd as a learner (after a <see cref="AuditKind.MembershipChange"/> entry) and
/// promoted once its member has caught up; one control-plane join at a time, because etcd 3.4 allows one learner.
/// Without a quorum every call fails with <see cref="ControlPlaneError.NoQuorum"/>, which the JoinService answers
/// Unavailable "control plane has no quorum" so the node keeps retrying.
/// </summary>
public sealed class KeyReleaseGate : IKeyReleaseGate, IDisposable
{
    /// <summary>How long a learner may take to start and catch up before it is removed again.</summary>
    public static readonly TimeSpan PromoteTimeout = TimeSpan.FromSeconds(120);

    private const int MaxReleaseAttempts = 8;

    private readonly NodeRegistry _registry;
    private readonly KeyRotation _rotation;
    private readonly AuditLog _audit;
    private readonly EtcdMembership _membership;
    private readonly string _caDirectory;
    private readonly ILogger _log;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _controlPlaneJoin = new(1, 1);
    private ulong _pendingPromotion;
    private string _pendingName = "";

    /// <summary>A gate over <paramref name="connection"/>; <paramref name="caDirectory"/> holds the cluster CA handed to joining control planes.</summary>
    public KeyReleaseGate(EtcdConnection connection, string caDirectory, ILoggerFactory loggers, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(loggers);
        _time = time ?? TimeProvider.System;
        _registry = new NodeRegistry(connection);
        _rotation = new KeyRotation(connection, _time);
        _audit = new AuditLog(connection, _time);
        _membership = new EtcdMembership(connection, loggers.CreateLogger(JoinServiceLog.Category), _time);
        _caDirectory = caDirectory;
        _log = loggers.CreateLogger(JoinServiceLog.Category);
    }

    /// <summary>The registry the gate reads.</summary>
    public NodeRegistry Registry => _registry;

    /// <summary>The audit log the gate appends to.</summary>
    public AuditLog Audit => _audit;

    /// <summary>
    /// Rejoin: the node must be registered, not revoked, and match its record. It gets its registry generation's keys
    /// and, while a rotation to a higher generation is pending, the target generation's too: its keyslot may have moved
    /// before its confirmation reached the registry (src/Asterism.Node/README.md, "Master-secret rotation", step 2).
    /// The record and the pending rotation come from one read (<see cref="KeyRotation.ReadForReleaseAsync"/>); the
    /// Release entry names both generations and is appended only while the record is unchanged.
    /// </summary>
    public async Task<RejoinRelease> ReleaseRejoinAsync(NodeIdentity identity, string diskUuid, ClusterSecrets secrets, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(identity);
        ArgumentNullException.ThrowIfNull(secrets);
        var view = await _rotation.ReadForReleaseAsync(identity.Name, cancellationToken);
        if (view.Node is null)
        {
            await RefuseAsync(identity, diskUuid, "not in the node registry", cancellationToken);
        }
        var read = view.Node!;
        await CheckRecordAsync(read.Record, identity, diskUuid, cancellationToken);
        var generation = GenerationOf(read.Record);
        var next = view.Pending is { } pending && pending.To > generation ? pending.To : 0;
        var secret = Resolve(identity, diskUuid, secrets, generation, view.Pending);
        MasterSecret? nextSecret = null;
        try
        {
            if (next > 0)
            {
                nextSecret = Resolve(identity, diskUuid, secrets, next, view.Pending);
            }
            var generations = next > 0 ? $"generations {generation} and {next}" : $"generation {generation}";
            await AuditReleaseAsync(read, identity, diskUuid, generation,
                $"rejoin: disk key of {diskUuid} ({generations}) to identity {identity.CertificateFingerprint}", cancellationToken);
            return new RejoinRelease(generation, secret, next, nextSecret);
        }
        catch
        {
            secret.Dispose();
            nextSecret?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Join: registers the node at the cluster's current generation (or checks it against the record a previous,
    /// interrupted join made, and serves that record's generation), adds a control plane to etcd as a learner, audits
    /// the release. A join while a rotation is pending registers at the rotation's From generation; the node catches up
    /// through the rotation call like every other node. The caller must call <see cref="JoinTicketSent"/> once the
    /// response is out (or failed) for a control plane.
    /// </summary>
    public async Task<JoinRelease> ReleaseJoinAsync(NodeIdentity identity, string diskUuid, ClusterSecrets secrets, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(identity);
        ArgumentNullException.ThrowIfNull(secrets);
        var view = await _rotation.ReadForReleaseAsync(identity.Name, cancellationToken);
        if (view.Node is null)
        {
            var record = new NodeRecord(identity.Name, identity.IsControlPlane ? NodeRole.ControlPlane : NodeRole.Worker, Guid.Parse(diskUuid),
                Convert.FromHexString(identity.CertificateFingerprint), _time.GetUtcNow(), KeyGeneration: view.CurrentGeneration);
            try
            {
                await _registry.RegisterAsync(record, cancellationToken);
            }
            catch (ControlPlaneException e) when (e.Error == ControlPlaneError.InvalidRequest)
            {
                // Registered meanwhile by another JoinService: the read below judges the caller by that record.
            }
            view = await _rotation.ReadForReleaseAsync(identity.Name, cancellationToken);
        }
        var read = view.Node ?? throw new ControlPlaneException(ControlPlaneError.Conflict, $"node {identity.Name} vanished from the registry while joining");
        await CheckRecordAsync(read.Record, identity, diskUuid, cancellationToken);
        if (GenerationOf(read.Record) < view.CurrentGeneration)
        {
            // Registered from a generation read before a completion committed (or by such a join cut short): a first key
            // must never be of a void generation — nothing would open that disk once the control planes promoted. A
            // joining disk has no key yet, so its record moves up to the current generation.
            var current = view.CurrentGeneration;
            await _registry.UpdateAsync(identity.Name, r => r.KeyGeneration < current ? r with { KeyGeneration = current } : r, cancellationToken);
            view = await _rotation.ReadForReleaseAsync(identity.Name, cancellationToken);
            read = view.Node ?? throw new ControlPlaneException(ControlPlaneError.Conflict, $"node {identity.Name} vanished from the registry while joining");
            await CheckRecordAsync(read.Record, identity, diskUuid, cancellationToken);
        }
        var generation = GenerationOf(read.Record);
        var secret = Resolve(identity, diskUuid, secrets, generation, view.Pending);
        try
        {
            if (!identity.IsControlPlane)
            {
                await AuditReleaseAsync(read, identity, diskUuid, generation,
                    $"join: disk key of {diskUuid} (generation {generation}) to identity {identity.CertificateFingerprint}", cancellationToken);
                return new JoinRelease(generation, secret);
            }
            return new JoinRelease(generation, secret, await AddControlPlaneAsync(identity, diskUuid, read, generation, cancellationToken));
        }
        catch
        {
            secret.Dispose();
            throw;
        }
    }

    /// <summary>A record's generation; 0 (a record from before generations existed) is 1.</summary>
    private static int GenerationOf(NodeRecord record) => Math.Max(1, record.KeyGeneration);

    /// <summary>
    /// The secret of <paramref name="generation"/> as this control plane holds it, or a refusal before anything is
    /// audited or derived: a void generation (only a revoked node's record can lag behind a completed rotation) is
    /// FailedPrecondition; one this control plane does not hold yet, or a sealed secret that does not open, is
    /// Unavailable, so the node asks another control plane or again.
    /// </summary>
    private MasterSecret Resolve(NodeIdentity identity, string diskUuid, ClusterSecrets secrets, int generation, RotationRecord? pending)
    {
        if (GenerationSecrets.Resolve(secrets, generation, pending, out var refusal) is { } secret)
        {
            return secret;
        }
        var held = secrets.Generation;
        JoinServiceLog.RefusedGenerationNotHeld(_log, identity.Name, diskUuid, generation, held, refusal);
        throw new RpcException(generation < held
            ? new Status(StatusCode.FailedPrecondition, $"key generation {generation} is void on this control plane")
            : new Status(StatusCode.Unavailable, $"this control plane cannot serve key generation {generation} now; try again"));
    }

    /// <summary>
    /// Appends the Release entry only if the node's record is still the one the decision was made on (compared in the
    /// same etcd transaction): a revocation that lands between the read and the append makes the append fail, and the
    /// release is decided again on the new record, so it is refused. A record that moved to another generation meanwhile
    /// fails the release (Conflict; the node asks again and gets the new generation's key). No entry, no key.
    /// </summary>
    private async Task AuditReleaseAsync(VersionedNodeRecord read, NodeIdentity identity, string diskUuid, int generation, string detail, CancellationToken cancellationToken)
    {
        for (var attempt = 0; attempt < MaxReleaseAttempts; attempt++)
        {
            if (BeforeReleaseAudit is { } hook)
            {
                await hook(identity.Name, cancellationToken);
            }
            if (await _audit.AppendIfUnchangedAsync(AuditKind.Release, read, detail, cancellationToken) is not null)
            {
                return;
            }
            var again = await _registry.GetVersionedAsync(identity.Name, cancellationToken);
            if (again is null)
            {
                await RefuseAsync(identity, diskUuid, "not in the node registry", cancellationToken);
            }
            read = again!;
            await CheckRecordAsync(read.Record, identity, diskUuid, cancellationToken);
            if (GenerationOf(read.Record) != generation)
            {
                throw new ControlPlaneException(ControlPlaneError.Conflict, $"the registry record of {identity.Name} moved to another key generation during its release");
            }
        }
        throw new ControlPlaneException(ControlPlaneError.Conflict, $"the registry record of {identity.Name} kept changing during its release");
    }

    /// <summary>
    /// Test seam: runs after the registry was read and checked, right before each conditional Release append, so a test
    /// can land a revocation exactly in the window the transaction must close.
    /// </summary>
    internal Func<string, CancellationToken, Task>? BeforeReleaseAudit { get; set; }

    /// <summary>Whether a control plane's join holds the one-at-a-time lock (tests: it must not stay held after a failure).</summary>
    internal bool ControlPlaneJoinInProgress => _controlPlaneJoin.CurrentCount == 0;

    private async Task<ControlPlaneTicket> AddControlPlaneAsync(NodeIdentity identity, string diskUuid, VersionedNodeRecord read, int generation, CancellationToken cancellationToken)
    {
        // Held until the learner is promoted (or given up): etcd 3.4 takes one learner at a time.
        if (!await _controlPlaneJoin.WaitAsync(TimeSpan.Zero, cancellationToken))
        {
            throw new RpcException(new Status(StatusCode.Unavailable, "another control plane is joining; try again"));
        }
        ulong? added = null;
        try
        {
            var members = await _membership.ListAsync(cancellationToken);
            if (members.Any(m => m.Name == identity.Name))
            {
                // A previous attempt of this node got as far as MemberAdd (its ticket or its start was lost): start over.
                await _membership.RemoveAsync(identity.Name, cancellationToken);
            }
            var peerUrl = await PeerUrlOfAsync(identity, cancellationToken);
            await _audit.AppendAsync(AuditKind.MembershipChange, identity.Name, $"etcd learner added at {peerUrl}", cancellationToken);
            var member = await _membership.AddAsync(identity.Name, peerUrl, asLearner: true, cancellationToken: cancellationToken);
            added = member.Id;
            var ticket = new ControlPlaneTicket(
                File.ReadAllBytes(Path.Combine(_caDirectory, ClusterCa.KeyFile)),
                File.ReadAllBytes(Path.Combine(_caDirectory, ClusterCa.CertificateFile)),
                [.. member.InitialCluster.Select(m => $"{m.Name}={m.PeerUrl.ToString().TrimEnd('/')}")]);
            try
            {
                await AuditReleaseAsync(read, identity, diskUuid, generation,
                    $"join: disk key of {diskUuid}, master secret (generation {generation}) and cluster CA to control plane {identity.CertificateFingerprint}", cancellationToken);
            }
            catch
            {
                ticket.Dispose();
                throw;
            }
            _pendingPromotion = member.Id;
            _pendingName = identity.Name;
            return ticket;
        }
        catch (Exception e)
        {
            if (added is not null)
            {
                await TryRemoveAsync(identity.Name);
            }
            _controlPlaneJoin.Release();
            if (e is RpcException { StatusCode: StatusCode.FailedPrecondition or StatusCode.ResourceExhausted or StatusCode.Unknown } rpc)
            {
                // etcd refused the learner (e.g. another JoinService's learner is still joining): the joiner retries.
                JoinServiceLog.ControlPlaneJoinFailed(_log, identity.Name, rpc.Status.Detail);
                throw new RpcException(new Status(StatusCode.Unavailable, "control plane cannot add a member now; try again"));
            }
            throw;
        }
    }

    /// <summary>
    /// After a control plane's ticket was sent (<paramref name="sent"/>) or not: promote its learner in the background
    /// once it has caught up, or remove it; the next control-plane join waits for this.
    /// </summary>
    public void JoinTicketSent(bool sent)
    {
        var id = _pendingPromotion;
        var name = _pendingName;
        _ = Task.Run(async () =>
        {
            try
            {
                if (!sent)
                {
                    await TryRemoveAsync(name);
                    return;
                }
                try
                {
                    await _membership.PromoteAsync(id, PromoteTimeout);
                }
                catch (Exception e) when (e is ControlPlaneException or RpcException)
                {
                    JoinServiceLog.ControlPlaneJoinFailed(_log, name, "promotion failed: " + e.Message);
                    await TryRemoveAsync(name);
                }
            }
            finally
            {
                _controlPlaneJoin.Release();
            }
        });
    }

    private async Task TryRemoveAsync(string name)
    {
        try
        {
            await _membership.RemoveAsync(name);
        }
        catch (Exception e) when (e is ControlPlaneException or RpcException)
        {
            JoinServiceLog.ControlPlaneJoinFailed(_log, name, "removing the learner failed: " + e.Message);
        }
    }

    /// <summary>The joiner's peer URL: its address comes from the metadata the provider serves, looked up by name.</summary>
    private async Task<Uri> PeerUrlOfAsync(NodeIdentity identity, CancellationToken cancellationToken)
    {
        var address = PeerAddressResolver is null ? null : await PeerAddressResolver(identity.Name, cancellationToken);
        return address is not null && System.Net.IPAddress.TryParse(address, out var ip) && System.Net.IPAddress.IsLoopback(ip)
            ? new Uri($"https://{address}:{EtcdMemberOptions.DefaultPeerPort}")
            : throw new ControlPlaneException(ControlPlaneError.InvalidRequest, $"no loopback address known for control plane {identity.Name}");
    }

    /// <summary>
    /// Maps a control plane's certified name to its 127.x address. The node sets it to a lookup in the provider's
    /// metadata (trusted: the provider plays the cloud); the connection's source address cannot serve, Linux sends
    /// from 127.0.0.1 to every 127.x.
    /// </summary>
    public Func<string, CancellationToken, Task<string?>>? PeerAddressResolver { get; set; }

    private async Task CheckRecordAsync(NodeRecord record, NodeIdentity identity, string diskUuid, CancellationToken cancellationToken)
    {
        // The same record checks as the running-node rotation gate, in one place.
        if (RotationGate.RecordRefusal(record, identity, diskUuid) is { } reason)
        {
            await RefuseAsync(identity, diskUuid, reason, cancellationToken);
        }
    }

    private async Task RefuseAsync(NodeIdentity identity, string diskUuid, string reason, CancellationToken cancellationToken)
    {
        JoinServiceLog.RefusedByRegistry(_log, identity.Name, identity.CertificateFingerprint, diskUuid, reason);
        try
        {
            await _audit.AppendRefusalAsync(identity.Name, reason, $"{reason}: disk {diskUuid}, identity {identity.CertificateFingerprint}", cancellationToken);
        }
        catch (ControlPlaneException)
        {
            // Refused either way; the log line above still records it.
        }
        throw new RpcException(new Status(StatusCode.PermissionDenied, "the node registry refuses this node"));
    }

    /// <inheritdoc />
    public void Dispose() => _controlPlaneJoin.Dispose();
}
