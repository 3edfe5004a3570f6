using System.Text.RegularExpressions;

namespace Asterism.Cloud;

/// <summary>spec.json: what the CLI asks the local provider to run.</summary>
public sealed partial record CloudSpec
{
    public const int CurrentVersion = 1;
    public const string SimulatedVariant = "simulated";
    public const string TpmVariant = "tpm";
    private const int MaxFileBytes = 256 * 1024;

    public int Version { get; init; } = CurrentVersion;
    public string ClusterName { get; init; } = "";

    /// <summary>"127.A.B".</summary>
    public string Subnet { get; init; } = "";

    /// <summary>"simulated" or "tpm".</summary>
    public string Variant { get; init; } = SimulatedVariant;

    public int ControlPlanes { get; init; } = 1;
    public int Workers { get; init; }

    /// <summary>
    /// Control planes added to the running cluster (<c>asterism node add --control-plane</c>), e.g. to replace a removed
    /// one. Planned after the workers, so no existing instance changes its name or address; named on from
    /// control-plane-<see cref="ControlPlanes"/>.
    /// </summary>
    public int AddedControlPlanes { get; init; }

    /// <summary>How to run the node, e.g. ["dotnet", "/abs/asterism-node.dll"].</summary>
    public IReadOnlyList<string> NodeCommand { get; init; } = [];

    /// <summary>Extra arguments every node gets (measured into PCR 9).</summary>
    public IReadOnlyList<string> NodeArgs { get; init; } = [];

    /// <summary>
    /// Lowercase hex SHA-256 of the workspace's init secret: the provider hands it to the first control-plane node
    /// only (its measured boot configuration), which takes init calls carrying that secret and nothing else.
    /// </summary>
    public string? InitSecretSha256 { get; init; }

    /// <summary>Every problem with the spec; empty when it is usable.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (Version != CurrentVersion)
        {
            errors.Add($"unsupported spec version {Version} (expected {CurrentVersion})");
        }
        if (ClusterName is null || !ClusterNamePattern().IsMatch(ClusterName))
        {
            errors.Add("clusterName must be 1-40 characters of a-z, 0-9 and '-', starting and ending with a letter or digit");
        }
        if (!CloudSubnet.TryParse(Subnet, out _, out var subnetError))
        {
            errors.Add(subnetError);
        }
        if (Variant is not (SimulatedVariant or TpmVariant))
        {
            errors.Add($"unknown variant '{Variant}' (expected '{SimulatedVariant}' or '{TpmVariant}')");
        }
        if (ControlPlanes < 1)
        {
            errors.Add("controlPlanes must be at least 1");
        }
        if (Workers < 0)
        {
            errors.Add("workers must not be negative");
        }
        if (AddedControlPlanes < 0)
        {
            errors.Add("addedControlPlanes must not be negative");
        }
        if ((long)ControlPlanes + Workers + AddedControlPlanes > CloudSubnet.MaxInstances)
        {
            errors.Add($"at most {CloudSubnet.MaxInstances} instances fit into one subnet");
        }
        if (NodeCommand is null || NodeCommand.Count == 0 || NodeCommand.Any(string.IsNullOrEmpty))
        {
            errors.Add("nodeCommand must be a non-empty list of non-empty strings");
        }
        else if (NodeCommand.Any(a => (a.Contains('/', StringComparison.Ordinal) || a.EndsWith(".dll", StringComparison.OrdinalIgnoreCase)) && !Path.IsPathRooted(a)))
        {
            errors.Add("paths in nodeCommand must be absolute (nodes run in their instance directory)");
        }
        if (InitSecretSha256 is not null && (InitSecretSha256.Length != 64 || !InitSecretSha256.All(c => c is >= '0' and <= '9' or >= 'a' and <= 'f')))
        {
            errors.Add("initSecretSha256 must be 64 lowercase hex digits");
        }
        if (NodeArgs is null || NodeArgs.Any(a => a is null || a.Contains('\0', StringComparison.Ordinal)))
        {
            errors.Add("nodeArgs must be a list of strings without NUL characters");
        }
        return errors;
    }

    /// <summary>The parsed subnet; throws <see cref="CloudConfigException"/> when invalid.</summary>
    public CloudSubnet ParsedSubnet() =>
        CloudSubnet.TryParse(Subnet, out var s, out var e) ? s! : throw new CloudConfigException(e);

    /// <summary>Instances in address order: control planes first, then workers, then control planes added later.</summary>
    public IReadOnlyList<InstancePlan> PlanInstances()
    {
        var subnet = ParsedSubnet();
        var plans = new List<InstancePlan>(ControlPlanes + Workers + AddedControlPlanes);
        for (var i = 0; i < ControlPlanes; i++)
        {
            plans.Add(new InstancePlan($"{ClusterName}-control-plane-{i}", InstanceRole.ControlPlane, subnet.InstanceAddress(plans.Count).ToString()));
        }
        for (var i = 0; i < Workers; i++)
        {
            plans.Add(new InstancePlan($"{ClusterName}-worker-{i}", InstanceRole.Worker, subnet.InstanceAddress(plans.Count).ToString()));
        }
        for (var i = 0; i < AddedControlPlanes; i++)
        {
            plans.Add(new InstancePlan($"{ClusterName}-control-plane-{ControlPlanes + i}", InstanceRole.ControlPlane, subnet.InstanceAddress(plans.Count).ToString()));
        }
        return plans;
    }

    /// <summary>Loads and validates spec.json; any problem is a <see cref="CloudConfigException"/> listing all errors.</summary>
    public static CloudSpec Load(string path)
    {
        var spec = CloudJson.ReadFile<CloudSpec>(path, MaxFileBytes);
        var errors = spec.Validate();
        return errors.Count == 0 ? spec : throw new CloudConfigException($"{path}: {string.Join("; ", errors)}");
    }

    /// <summary>Validates and writes spec.json atomically (used by `asterism create`).</summary>
    public void Save(string path)
    {
        var errors = Validate();
        if (errors.Count != 0)
        {
            throw new CloudConfigException(string.Join("; ", errors));
        }
        OwnerOnly.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        CloudJson.WriteFileAtomic(path, this);
    }

    [GeneratedRegex("^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")]
    private static partial Regex ClusterNamePattern();
}

/// <summary>One instance the provider runs: its name, role and loopback address.</summary>
public sealed record InstancePlan(string Name, InstanceRole Role, string Address);
