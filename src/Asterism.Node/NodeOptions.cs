using System.Net;

namespace Asterism.Node;

/// <summary>Everything a node is told at start (by the local provider acting as its hypervisor).</summary>
public sealed class NodeOptions
{
    public required string Name { get; init; }

    public required NodeRole Role { get; init; }

    /// <summary>The node's own loopback address; every listener binds to it.</summary>
    public required IPAddress Address { get; init; }

    /// <summary>The state-disk image file.</summary>
    public required string DiskPath { get; init; }

    /// <summary>The node's directory (attestation key, boot measurements).</summary>
    public required string NodeDirectory { get; init; }

    /// <summary>Where the state filesystem is mounted: <c>NODE_DIR/state</c>.</summary>
    public string StateDirectory => Path.Combine(NodeDirectory, Cloud.Local.NodeProvisioning.StateDirectoryName);

    /// <summary>The node's private runtime directory (the FUSE block file): <c>NODE_DIR/run</c>.</summary>
    public string RuntimeDirectory => Path.Combine(NodeDirectory, Cloud.Local.NodeProvisioning.RuntimeDirectoryName);

    /// <summary>The cloud metadata API, e.g. http://127.42.7.1:8080.</summary>
    public required Uri MetadataEndpoint { get; init; }

    public string Variant { get; init; } = "simulated";

    /// <summary>swtpm command socket for the tpm variant: unix:/absolute/path or /absolute/path (TCP endpoints are refused).</summary>
    public string? TpmEndpoint { get; init; }

    /// <summary>Pause between RejoinClient rounds (Constellation: 30 s).</summary>
    public TimeSpan RejoinInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Pause between a running node's key-rotation rounds (<c>Rotation/RotationLoop</c>). Separate from
    /// <see cref="RejoinInterval"/>: a rejoin round runs only while the node waits, a rotation round for the node's whole
    /// life, each one an attested call, so a short rejoin interval must not make every running node dial every 2 s.
    /// </summary>
    public TimeSpan RotationInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Per-call timeout of a rejoin or join request (Constellation: 30 s).</summary>
    public TimeSpan RejoinTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Size of a newly formatted state disk (default: <see cref="DefaultDiskSize"/> of the role).</summary>
    public long DiskSize { get; init; } = 32L * 1024 * 1024;

    /// <summary>
    /// A control plane's disk holds an etcd member: etcd 3.4 preallocates each 64 MB WAL segment (and the next one
    /// ahead of need) and keeps snapshots beside its database, so 32 MiB cannot even start it; 256 MiB leaves room for
    /// two segments, the database and the journal. Workers keep 32 MiB: whole-image hashes in tests and backups of
    /// images stay small. The image is sparse (fallocate makes unwritten extents, mkfs initializes lazily), so the size
    /// costs host disk only where something was written.
    /// </summary>
    public static long DefaultDiskSize(NodeRole role) => role == NodeRole.ControlPlane ? 256L * 1024 * 1024 : 32L * 1024 * 1024;

    public bool Debug { get; init; }
}

public enum NodeRole
{
    ControlPlane,
    Worker,
}

public static class NodeRoles
{
    public static string Name(this NodeRole role) => role == NodeRole.ControlPlane ? "control-plane" : "worker";

    public static bool TryParse(string? text, out NodeRole role)
    {
        switch (text?.ToLowerInvariant())
        {
            case "control-plane" or "controlplane":
                role = NodeRole.ControlPlane;
                return true;
            case "worker":
                role = NodeRole.Worker;
                return true;
            default:
                role = NodeRole.Worker;
                return false;
        }
    }
}
