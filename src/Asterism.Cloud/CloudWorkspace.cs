namespace Asterism.Cloud;

/// <summary>Paths of the local cloud inside a workspace: WORKSPACE/.asterism/cloud/…</summary>
public sealed class CloudWorkspace
{
    public CloudWorkspace(string workspaceDir)
    {
        ArgumentException.ThrowIfNullOrEmpty(workspaceDir);
        WorkspaceDir = Path.GetFullPath(workspaceDir);
        CloudDir = Path.Combine(WorkspaceDir, ".asterism", "cloud");
    }

    public string WorkspaceDir { get; }
    public string CloudDir { get; }

    /// <summary>WORKSPACE/.asterism: everything of Asterism's own below the operator's files.</summary>
    public string AsterismDir => Path.GetDirectoryName(CloudDir)!;

    /// <summary>
    /// Creates .asterism, the cloud directory and the instances directory as 0700, tightening any that exist. The
    /// workspace directory itself is the operator's and keeps its mode: what Asterism puts into it is 0600.
    /// </summary>
    public void EnsurePrivateDirectories()
    {
        OwnerOnly.CreateDirectory(AsterismDir);
        OwnerOnly.CreateDirectory(CloudDir);
        OwnerOnly.CreateDirectory(InstancesDir);
    }

    /// <summary>Written by the CLI's create.</summary>
    public string SpecPath => Path.Combine(CloudDir, "spec.json");

    /// <summary>Written by the provider once it is ready; removed when it stops cleanly.</summary>
    public string StatePath => Path.Combine(CloudDir, "cloud.json");

    /// <summary>The provider's own log (stdout and stderr when launched detached).</summary>
    public string LogPath => Path.Combine(CloudDir, "cloud.log");

    /// <summary>The workspace's API credential (0600): the bearer token of the provider's mutating API and the workload API.</summary>
    public string CredentialPath => Path.Combine(CloudDir, ApiCredential.FileName);

    public string InstancesDir => Path.Combine(CloudDir, "instances");

    public string InstanceDir(string name) => Path.Combine(InstancesDir, name);
    public string DiskPath(string name) => Path.Combine(InstanceDir(name), "disk.img");
    public string NodeDir(string name) => Path.Combine(InstanceDir(name), "node");

    /// <summary>Where the node mounts its state filesystem (<c>node/state</c>).</summary>
    public string NodeStateDir(string name) => Path.Combine(NodeDir(name), Local.NodeProvisioning.StateDirectoryName);

    /// <summary>The node's private runtime directory: its FUSE block file (<c>node/run</c>).</summary>
    public string NodeRuntimeDir(string name) => Path.Combine(NodeDir(name), Local.NodeProvisioning.RuntimeDirectoryName);

    /// <summary>SHA-256 of the API credential in the node's directory: the node checks workload callers against it.</summary>
    public string CredentialHashPath(string name) => Path.Combine(NodeDir(name), ApiCredential.HashFileName);

    /// <summary>Serial console: the instance's stdout and stderr, appended across boots.</summary>
    public string ConsoleLogPath(string name) => Path.Combine(InstanceDir(name), "console.log");

    public string BootMeasurementsPath(string name) => Path.Combine(InstanceDir(name), MeasuredBoot.FileName);
}
