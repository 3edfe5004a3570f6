namespace Asterism.Cloud;

/// <summary>Power actions of the local provider.</summary>
public enum PowerAction
{
    /// <summary>SIGTERM, wait for the grace period, then SIGKILL.</summary>
    Stop,

    Start,

    /// <summary>Stop then start: a fresh measured boot.</summary>
    Reboot,

    /// <summary>SIGKILL without warning (a power cut).</summary>
    Crash,
}

public static class PowerActions
{
    public static string ToWire(this PowerAction action) => action.ToString().ToLowerInvariant();

    public static bool TryParse(string? s, out PowerAction action)
    {
        (var ok, action) = s switch
        {
            "stop" => (true, PowerAction.Stop),
            "start" => (true, PowerAction.Start),
            "reboot" => (true, PowerAction.Reboot),
            "crash" => (true, PowerAction.Crash),
            _ => (false, PowerAction.Stop),
        };
        return ok;
    }
}

/// <summary>POST /v1/power body. <see cref="Names"/> null means every instance.</summary>
public sealed record PowerRequest
{
    public string Action { get; init; } = "";
    public IReadOnlyList<string>? Names { get; init; }
}

/// <summary>What one power action did to one instance.</summary>
public sealed record PowerResult
{
    public string Name { get; init; } = "";
    public string Action { get; init; } = "";

    /// <summary>False when the instance already was in the requested state (start of a running one, stop of a stopped one).</summary>
    public bool Changed { get; init; }

    /// <summary>Power state after the action.</summary>
    public string Power { get; init; } = "";

    /// <summary>Set when the action failed for this instance (e.g. the node binary could not be measured).</summary>
    public string? Error { get; init; }
}

public sealed record PowerResponse
{
    public IReadOnlyList<PowerResult> Results { get; init; } = [];
}

public sealed record InstanceListResponse
{
    public IReadOnlyList<InstanceInfo> Instances { get; init; } = [];
}

public sealed record EndpointResponse
{
    public string LoadBalancer { get; init; } = "";
}

public sealed record ErrorResponse
{
    public string Error { get; init; } = "";
}

/// <summary>cloud.json: written by a ready provider, removed when it stops cleanly.</summary>
public sealed record CloudState
{
    public int Version { get; init; } = 1;
    public int Pid { get; init; }

    /// <summary>The provider's start time (<see cref="ProcessIdentity.StartTicks"/>): a reused <see cref="Pid"/> is never taken for it. 0 = unknown.</summary>
    public ulong ProcessStartTicks { get; init; }

    /// <summary>The provider process this file names, if it still runs (same PID, same start time when recorded, an asterism-cloud command line).</summary>
    public ProcessIdentity? RunningProvider() =>
        ProcessIdentity.Of(Pid) is { } live && (ProcessStartTicks == 0 || live.StartTicks == ProcessStartTicks)
            && live.CommandLine().Contains("asterism-cloud", StringComparison.Ordinal) ? live : null;
    public string MetadataUrl { get; init; } = "";
    public string LoadBalancer { get; init; } = "";
    public string Subnet { get; init; } = "";
    public DateTimeOffset StartedAt { get; init; }

    public static CloudState Load(string path) => CloudJson.ReadFile<CloudState>(path, 64 * 1024);
}

/// <summary>POST /v1/shutdown answer (202): the provider stops every instance and exits after answering.</summary>
public sealed record ShutdownResponse
{
    public string Status { get; init; } = "shutting down";
}
