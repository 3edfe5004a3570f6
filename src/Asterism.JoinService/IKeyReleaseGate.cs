using Asterism.Attestation.Identities;

namespace Asterism.JoinService;

/// <summary>
/// What <see cref="JoinApiService"/> asks before a key leaves: <see cref="KeyReleaseGate"/> (the node registry and the
/// audit log in etcd) on every control plane. The seam exists so `macro rejoin` can measure the same service over an
/// in-memory registry as its baseline; nothing else implements it.
/// </summary>
public interface IKeyReleaseGate
{
    /// <summary>
    /// Allows a rejoin (or throws PermissionDenied / a control-plane failure / an RpcException when this control plane
    /// cannot serve the generation the registry names) and audits the release — naming every generation that leaves —
    /// before it returns the generations' secrets, copied from <paramref name="secrets"/>; the caller disposes them.
    /// </summary>
    Task<RejoinRelease> ReleaseRejoinAsync(NodeIdentity identity, string diskUuid, ClusterSecrets secrets, CancellationToken cancellationToken);

    /// <summary>
    /// Allows a first join, registering the node at the cluster's current generation; returns that generation's secret
    /// (a copy from <paramref name="secrets"/>) and a control plane's etcd ticket (null for a worker).
    /// </summary>
    Task<JoinRelease> ReleaseJoinAsync(NodeIdentity identity, string diskUuid, ClusterSecrets secrets, CancellationToken cancellationToken);

    /// <summary>After a control plane's join response went out (or failed).</summary>
    void JoinTicketSent(bool sent);
}
