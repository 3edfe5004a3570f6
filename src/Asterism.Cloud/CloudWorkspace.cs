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

    /// <summary>Written by the CLI's create.</summary>
    public string SpecPath => Path.Combine(CloudDir, "spec.json");

    /// <summary>Written by the provider once it is ready; removed when it stops cleanly.</summary>
    public string StatePath => Path.Combine(CloudDir, "cloud.json");

    /// <summary>The provider's own log (stdout and stderr when launched detached).</summary>
    public string LogPath => Path.Combine(CloudDir, "cloud.log");

    public string InstancesDir => Path.Combine(CloudDir, "instances");

    public string InstanceDir(string name) => Path.Combine(InstancesDir, name);
    public string DiskPath(string name) => Path.Combine(InstanceDir(name), "disk.img");
    public string NodeDir(string name) => Path.Combine(InstanceDir(name), "node");

    /// <summary>Serial console: the instance's stdout and stderr, appended across boots.</summary>
    public string ConsoleLogPath(string name) => Path.Combine(InstanceDir(name), "console.log");

    public string BootMeasurementsPath(string name) => Path.Combine(InstanceDir(name), MeasuredBoot.FileName);
}
