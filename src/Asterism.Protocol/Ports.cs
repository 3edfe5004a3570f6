namespace Asterism.Protocol;

/// <summary>Well-known ports of a node (each node owns its loopback address, so every node uses the same ports).</summary>
public static class Ports
{
    /// <summary>RecoveryServer (control-plane nodes, while waiting for a key).</summary>
    public const int Recovery = 9999;

    /// <summary>JoinService (control-plane nodes, after boot).</summary>
    public const int JoinService = 30090;

    /// <summary>Cluster API: health and node list (control-plane nodes, after boot).</summary>
    public const int ClusterApi = 6443;

    /// <summary>Init server (first boot of a control-plane node).</summary>
    public const int Init = 9000;

    /// <summary>Boot status (every node, every phase).</summary>
    public const int Status = 9990;

    /// <summary>The workload's data API (every node, after boot).</summary>
    public const int Workload = 8080;
}

/// <summary>Boot phases as reported by the status call.</summary>
public static class BootPhases
{
    public const string Booting = "booting";
    public const string WaitingForKey = "waiting-for-key";
    public const string Booted = "booted";
}
