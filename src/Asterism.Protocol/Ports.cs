namespace Asterism.Protocol;

/// <summary>
/// The one ports table: every node owns its loopback address, so every node uses the same ports; the local provider's
/// metadata API and load balancer have their own addresses in the cluster's subnet.
/// </summary>
public static class Ports
{
    /// <summary>RecoveryServer (control-plane nodes, while waiting for a key).</summary>
    public const int Recovery = 9999;

    /// <summary>JoinService (control-plane nodes, after boot).</summary>
    public const int JoinService = 30090;

    /// <summary>
    /// join.Rotation (control-plane nodes, after boot): a running node's master-secret rotation call, on its own aTLS
    /// listener whose policy requires this cluster's running-node PCR 15 (never 0). Dialled directly on every control
    /// plane, never load balanced.
    /// </summary>
    public const int Rotation = 30091;

    /// <summary>Cluster API: health and node list (control-plane nodes, after boot; Kubernetes' API port in Constellation).</summary>
    public const int ClusterApi = 6443;

    /// <summary>Init server (first boot of a control-plane node).</summary>
    public const int Init = 9000;

    /// <summary>Boot status (every node, every phase).</summary>
    public const int Status = 9990;

    /// <summary>The workload's data API (every node, after boot).</summary>
    public const int Workload = 8080;

    /// <summary>The provider's metadata API, on the subnet's provider address 127.A.B.1.</summary>
    public const int Metadata = 8080;

    /// <summary>The ports the provider's load balancer carries to healthy control-plane instances.</summary>
    public static IReadOnlyList<int> LoadBalanced { get; } = [Recovery, JoinService, ClusterApi];
}

/// <summary>Boot phases as reported by the status call.</summary>
public static class BootPhases
{
    public const string Booting = "booting";
    public const string WaitingForKey = "waiting-for-key";
    public const string Booted = "booted";
}
