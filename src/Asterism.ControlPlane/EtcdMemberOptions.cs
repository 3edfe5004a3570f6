using System.Net;

namespace Asterism.ControlPlane;

/// <summary>Whether a member founds a cluster or joins one (etcd's <c>--initial-cluster-state</c>).</summary>
public enum ClusterState
{
    /// <summary>A new cluster: the first start of <c>init</c>'s member.</summary>
    New,

    /// <summary>An existing cluster: a member added by MemberAdd, and every restart of any member.</summary>
    Existing,
}

/// <summary>How to run one etcd member.</summary>
public sealed class EtcdMemberOptions
{
    /// <summary>etcd's default client port.</summary>
    public const int DefaultClientPort = 2379;

    /// <summary>etcd's default peer port.</summary>
    public const int DefaultPeerPort = 2380;

    /// <summary>Member name (the node name).</summary>
    public required string Name { get; init; }

    /// <summary>The node's own loopback address; clients and peers connect here.</summary>
    public required IPAddress Address { get; init; }

    /// <summary>Client port (2379 in production; tests inject others).</summary>
    public int ClientPort { get; init; } = DefaultClientPort;

    /// <summary>Peer port (2380 in production; tests inject others).</summary>
    public int PeerPort { get; init; } = DefaultPeerPort;

    /// <summary>etcd's data directory (made 0700); on the node's encrypted state filesystem.</summary>
    public required string DataDirectory { get; init; }

    /// <summary>The member certificate (serverAuth + clientAuth) used for client and peer TLS, and the cluster CA.</summary>
    public required TlsFiles Tls { get; init; }

    /// <summary>
    /// Every member's name and peer URL, this one included (<c>--initial-cluster</c>); null means this member alone
    /// (<c>init</c>). etcd only reads it when the data directory is empty.
    /// </summary>
    public IReadOnlyList<(string Name, Uri PeerUrl)>? InitialCluster { get; init; }

    /// <summary>New for <c>init</c>'s first start, Existing for a member added later and for every restart.</summary>
    public ClusterState State { get; init; } = ClusterState.New;

    /// <summary>The cluster token, the same on every member (the cluster name).</summary>
    public string ClusterToken { get; init; } = "asterism";

    /// <summary>The etcd binary; null searches PATH for <c>etcd</c>.</summary>
    public string? EtcdPath { get; init; }

    /// <summary>How long <see cref="EtcdMember.StartAsync"/> waits for the member to be healthy.</summary>
    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long a stop waits after SIGTERM before SIGKILL.</summary>
    public TimeSpan StopTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Whether the member starts as a learner (set after MemberAdd as learner; it does not serve linearizable reads).</summary>
    public bool IsLearner { get; init; }

    /// <summary>The URL clients use.</summary>
    public Uri ClientUrl => new($"https://{Format(Address)}:{ClientPort}");

    /// <summary>The URL peers use.</summary>
    public Uri PeerUrl => new($"https://{Format(Address)}:{PeerPort}");

    internal static string Format(IPAddress address) =>
        address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();
}
