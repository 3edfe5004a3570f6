namespace Asterism.Cloud;

/// <summary>Ports of the local cloud (CONSTELLATION-FACTS §0.2).</summary>
public static class WellKnownPorts
{
    /// <summary>RecoveryServer of control-plane nodes.</summary>
    public const int Recovery = 9999;

    /// <summary>JoinService (NodePort in Constellation).</summary>
    public const int JoinService = 30090;

    /// <summary>Cluster API.</summary>
    public const int KubernetesApi = 6443;

    /// <summary>The provider's metadata API on 127.A.B.1.</summary>
    public const int Metadata = 8080;

    /// <summary>The ports the load balancer carries to healthy control-plane instances.</summary>
    public static IReadOnlyList<int> LoadBalanced { get; } = [Recovery, JoinService, KubernetesApi];
}
