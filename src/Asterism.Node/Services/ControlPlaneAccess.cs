using Asterism.ControlPlane;

namespace Asterism.Node.Services;

/// <summary>
/// The etcd connection the node hands the cluster API once its etcd member runs (and takes back before it stops).
/// While there is none, every operation that needs the registry or the audit log answers "control plane has no quorum".
/// </summary>
public sealed class ControlPlaneAccess
{
    private EtcdConnection? _connection;

    /// <summary>The current connection, or null while etcd does not run on this node.</summary>
    public EtcdConnection? Connection => Volatile.Read(ref _connection);

    /// <summary>Makes <paramref name="connection"/> available to the handlers (the caller keeps owning it).</summary>
    public void Attach(EtcdConnection connection) => Volatile.Write(ref _connection, connection ?? throw new ArgumentNullException(nameof(connection)));

    /// <summary>
    /// This control plane's cluster secrets (set with the etcd connection): rotation seals the next master secret under
    /// the current one. Null on a node without them.
    /// </summary>
    public Asterism.JoinService.ClusterSecrets? Secrets { get; set; }

    /// <summary>Withdraws the connection (before it is disposed).</summary>
    public void Detach() => Volatile.Write(ref _connection, null);
}
