using Asterism.Attestation.Identities;

namespace Asterism.JoinService;

/// <summary>
/// What <see cref="JoinApiService"/> asks before a key leaves: <see cref="KeyReleaseGate"/> (the node registry and the
/// audit log in etcd) on every control plane. The seam exists so `macro rejoin` can measure the same service over an
/// in-memory registry as its baseline; nothing else implements it.
/// </summary>
public interface IKeyReleaseGate
{
    /// <summary>Allows a rejoin (or throws PermissionDenied / a control-plane failure) and audits the release before it returns.</summary>
    Task ReleaseRejoinAsync(NodeIdentity identity, string diskUuid, CancellationToken cancellationToken);

    /// <summary>Allows a first join; returns a control plane's etcd ticket, null for a worker.</summary>
    Task<ControlPlaneTicket?> ReleaseJoinAsync(NodeIdentity identity, string diskUuid, CancellationToken cancellationToken);

    /// <summary>After a control plane's join response went out (or failed).</summary>
    void JoinTicketSent(bool sent);
}
