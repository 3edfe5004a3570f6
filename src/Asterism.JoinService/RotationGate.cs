using System.Security.Cryptography;
using Asterism.Attestation;
using Asterism.Attestation.Identities;
using Asterism.ControlPlane;
using Asterism.Crypto;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace Asterism.JoinService;

/// <summary>What a running node gets while a rotation is pending: its disk key of the target generation.</summary>
/// <param name="Generation">The rotation's target generation.</param>
/// <param name="DiskKey">The node's disk key of <paramref name="Generation"/>; the caller zeroes it once sent.</param>
/// <param name="KeyCheck">
/// DeriveClusterId(measurement secret of the new master secret, measurement salt): what the node state keeps so a
/// recovery with the new secret passes the measurement-secret check (src/Asterism.Node/README.md, "Decision").
/// </param>
/// <param name="MasterSecret">
/// Only for a caller whose certified identity and registry record are both control plane: the target generation's
/// master secret, which it keeps beside its current one and promotes at completion; a copy the offer owns and zeroes.
/// </param>
public sealed record RotationOffer(int Generation, SecretBytes DiskKey, byte[] KeyCheck, MasterSecret? MasterSecret = null) : IDisposable
{
    /// <inheritdoc />
    public override string ToString() => $"rotation offer to generation {Generation} [key redacted]";

    /// <inheritdoc />
    public void Dispose()
    {
        DiskKey.Dispose();
        MasterSecret?.Dispose();
    }
}

/// <summary>
/// The JoinService's side of a running node's key rotation (issue #16 item 4): a node that is up with its keys
/// (PCR 15 = this cluster's cluster-ID value, never 0) asks for its disk key of the pending generation and, once its
/// keyslot moved, confirms. Every call is judged like a rejoin release, on the certified identity only: registered,
/// not revoked, same certificate, disk UUID and role as the registry record; refusals are audited
/// (<see cref="AuditKind.RefusedRelease"/>) and PermissionDenied, each offer is a <see cref="AuditKind.Release"/>
/// entry before the key is derived. The join/rejoin/recover policy (PCR 15 = 0) is not involved: this gate checks
/// PCR 15 against <see cref="AttestationPolicy.ForRunningNode"/>'s value itself, as well as the listener that serves
/// it must (defense in depth: a handshake validated under another policy still cannot reach a key here).
/// </summary>
public sealed class RotationGate(EtcdConnection connection, ClusterSecrets secrets, byte[] clusterId, ILoggerFactory loggers, TimeProvider? time = null)
{
    private readonly AuditLog _audit = new(connection, time);
    private readonly KeyRotation _rotation = new(connection, time);
    private readonly byte[] _expectedPcr15 = Measurements.ClusterIdPcr15(clusterId);
    private readonly ILogger _log = loggers.CreateLogger(JoinServiceLog.Category);

    /// <summary>
    /// The disk key of the pending rotation's target generation for the caller, or null when no rotation is pending or
    /// the caller's record is already on the target. A control plane (certified identity and registry record) also
    /// gets the target's master secret; a worker never does. Refused (PermissionDenied, audited) as described on the
    /// class. The Release entry is appended only while the record is still the one read (a revocation landing
    /// in between fails it: Conflict, no key).
    /// </summary>
    public async Task<RotationOffer?> OfferAsync(AttestationFacts facts, string diskUuid, CancellationToken cancellationToken)
    {
        var (identity, view) = await CheckAsync(facts, diskUuid, cancellationToken);
        var read = view.Node!;
        var pending = view.Pending;
        if (pending is null || read.Record.KeyGeneration >= pending.To)
        {
            return null;
        }
        // The cached next secret when this control plane holds it, else the sealed one opened (and then cached).
        using var next = GenerationSecrets.Resolve(secrets, pending.To, pending, out var refusal)
            ?? throw new ControlPlaneException(ControlPlaneError.Corrupt, refusal);
        var controlPlane = identity.IsControlPlane && read.Record.Role == NodeRole.ControlPlane;
        var what = controlPlane ? "disk key and master secret" : "disk key";
        if (await _audit.AppendIfUnchangedAsync(AuditKind.Release, read,
            $"rotation: generation {pending.To} {what} of {diskUuid} to identity {identity.CertificateFingerprint}", cancellationToken) is null)
        {
            throw new ControlPlaneException(ControlPlaneError.Conflict, $"the registry record of {identity.Name} changed during the rotation offer; ask again");
        }
        var diskKey = KeyDerivation.DeriveDiskKey(next, diskUuid, pending.To);
        var keyCheck = KeyDerivation.DeriveKeyCheck(next, secrets.MeasurementSalt);
        return new RotationOffer(pending.To, diskKey, keyCheck, controlPlane ? MasterSecret.FromBytes(next.Key, next.Salt) : null);
    }

    /// <summary>
    /// Records that the caller's keyslot 0 now opens with <paramref name="generation"/>'s key (audited by
    /// <see cref="KeyRotation.ConfirmAsync"/>); same checks as <see cref="OfferAsync"/>. Returns the record's generation.
    /// </summary>
    public async Task<int> ConfirmAsync(AttestationFacts facts, string diskUuid, int generation, CancellationToken cancellationToken)
    {
        var (identity, _) = await CheckAsync(facts, diskUuid, cancellationToken);
        return (await _rotation.ConfirmAsync(identity.Name, generation, cancellationToken)).KeyGeneration;
    }

    /// <summary>
    /// Why the registry refuses <paramref name="identity"/> asking for <paramref name="diskUuid"/>, or null: the same
    /// four checks a rejoin release makes against the record.
    /// </summary>
    public static string? RecordRefusal(NodeRecord? record, NodeIdentity identity, string diskUuid)
    {
        ArgumentNullException.ThrowIfNull(identity);
        if (record is null)
        {
            return "not in the node registry";
        }
        if (record.Revoked)
        {
            return "revoked";
        }
        if (!CryptographicOperations.FixedTimeEquals(record.Identity, Convert.FromHexString(identity.CertificateFingerprint)))
        {
            return "certified identity differs from the registry";
        }
        if (!Guid.TryParse(diskUuid, out var uuid) || uuid != record.DiskUuid)
        {
            return "disk UUID differs from the registry";
        }
        return (record.Role == NodeRole.ControlPlane) != identity.IsControlPlane ? "role differs from the registry" : null;
    }

    private async Task<(NodeIdentity Identity, ReleaseView View)> CheckAsync(AttestationFacts facts, string diskUuid, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(facts);
        var identity = facts.Identity ?? throw new RpcException(new Status(StatusCode.PermissionDenied, "the caller has no certified identity"));
        if (!facts.Pcrs.TryGetValue(Measurements.ClusterIdIndex, out var pcr15) || pcr15 is null
            || !CryptographicOperations.FixedTimeEquals(pcr15, _expectedPcr15))
        {
            await RefuseAsync(identity, diskUuid, "PCR 15 is not this cluster's running-node value", cancellationToken);
        }
        if (!KeyDerivation.IsCanonicalDiskUuid(diskUuid) || diskUuid != identity.DiskUuid)
        {
            await RefuseAsync(identity, diskUuid, "disk UUID is not the one its certified identity owns", cancellationToken);
        }
        // The record and the pending rotation in one linearizable read.
        var view = await _rotation.ReadForReleaseAsync(identity.Name, cancellationToken);
        if (RecordRefusal(view.Node?.Record, identity, diskUuid) is { } reason)
        {
            await RefuseAsync(identity, diskUuid, reason, cancellationToken);
        }
        return (identity, view);
    }

    private async Task RefuseAsync(NodeIdentity identity, string diskUuid, string reason, CancellationToken cancellationToken)
    {
        JoinServiceLog.RefusedByRegistry(_log, identity.Name, identity.CertificateFingerprint, diskUuid, "rotation: " + reason);
        try
        {
            await _audit.AppendRefusalAsync(identity.Name, "rotation: " + reason, $"rotation: {reason}: disk {diskUuid}, identity {identity.CertificateFingerprint}", cancellationToken);
        }
        catch (ControlPlaneException)
        {
            // Refused either way; the log line above still records it.
        }
        throw new RpcException(new Status(StatusCode.PermissionDenied, "the node registry refuses this node"));
    }
}
