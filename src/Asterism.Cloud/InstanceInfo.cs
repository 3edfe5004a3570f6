using System.Text.Json.Serialization;

namespace Asterism.Cloud;

public enum InstanceRole
{
    ControlPlane,
    Worker,
}

public enum PowerState
{
    Stopped,
    Running,
}

/// <summary>Wire names of roles and power states ("control-plane", "worker", "running", "stopped").</summary>
public static class CloudNames
{
    public const string ControlPlane = "control-plane";
    public const string Worker = "worker";
    public const string Running = "running";
    public const string Stopped = "stopped";

    public static string ToWire(this InstanceRole role) => role == InstanceRole.ControlPlane ? ControlPlane : Worker;
    public static string ToWire(this PowerState power) => power == PowerState.Running ? Running : Stopped;

    public static bool TryParseRole(string? s, out InstanceRole role)
    {
        role = s == Worker ? InstanceRole.Worker : InstanceRole.ControlPlane;
        return s is ControlPlane or Worker;
    }
}

/// <summary>
/// An instance as the metadata API reports it. Role and power are the wire strings ("control-plane"/"worker",
/// "running"/"stopped"); <see cref="Pid"/> (running only) and <see cref="Boots"/> are extras for the CLI and tests.
/// </summary>
public sealed record InstanceInfo
{
    public string Name { get; init; } = "";
    public string Role { get; init; } = "";
    public string Address { get; init; } = "";
    public string Power { get; init; } = "";
    public int? Pid { get; init; }
    public int Boots { get; init; }

    [JsonIgnore]
    public bool IsControlPlane => Role == CloudNames.ControlPlane;
    [JsonIgnore]
    public bool IsRunning => Power == CloudNames.Running;
}
