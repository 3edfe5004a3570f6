namespace Asterism.Config;

/// <summary>
/// asterism-state.yaml: what exists — the infrastructure the provider made, and after init the cluster values.
/// </summary>
public sealed class ClusterState : IValidatedWorkspaceFile
{
    public const string FileName = "asterism-state.yaml";
    public const string CurrentVersion = "v1";

    public string Version { get; set; } = CurrentVersion;

    public InfrastructureSection Infrastructure { get; set; } = new();

    public ClusterValuesSection ClusterValues { get; set; } = new();

    /// <summary>True once init recorded the cluster ID.</summary>
    [YamlDotNet.Serialization.YamlIgnore]
    public bool IsInitialized => !string.IsNullOrEmpty(ClusterValues?.ClusterId);

    public static ClusterState Load(string path) => WorkspaceFile.LoadValidated<ClusterState>(path);

    public static ClusterState Parse(string yaml) => WorkspaceFile.ParseValidated<ClusterState>(yaml, FileName);

    public void Save(string path) => WorkspaceFile.SaveValidated(path, this);

    /// <summary>Checks the pre-init fields always and the cluster values once any is set.</summary>
    public void Validate(string fileName = FileName)
    {
        void Fail(string field, string problem) => throw new WorkspaceFileException($"{fileName}: {field}: {problem}");

        if (Version != CurrentVersion)
        {
            Fail("version", $"unsupported version \"{Version}\" (expected \"{CurrentVersion}\")");
        }
        if (Infrastructure is null)
        {
            Fail("infrastructure", "missing");
            return;
        }
        if (string.IsNullOrWhiteSpace(Infrastructure.Uid))
        {
            Fail("infrastructure.uid", "missing");
        }
        if (string.IsNullOrWhiteSpace(Infrastructure.Name))
        {
            Fail("infrastructure.name", "missing");
        }
        CheckLoopback(Infrastructure.ClusterEndpoint, "infrastructure.clusterEndpoint", Fail);
        CheckLoopback(Infrastructure.InClusterEndpoint, "infrastructure.inClusterEndpoint", Fail);
        if (Infrastructure.Local is null)
        {
            Fail("infrastructure.local", "missing (the local provider's block)");
            return;
        }
        if (!LocalInfrastructure.IsLoopbackSubnet(Infrastructure.Local.Subnet))
        {
            Fail("infrastructure.local.subnet", $"\"{Infrastructure.Local.Subnet}\" is not a /24 inside 127.0.0.0/8 written as 127.A.B");
        }
        if (ClusterValues is null)
        {
            ClusterValues = new();
        }
        var initialized = !string.IsNullOrEmpty(ClusterValues.ClusterId) || !string.IsNullOrEmpty(ClusterValues.MeasurementSalt);
        if (initialized)
        {
            if (!WorkspaceFile.IsHex(ClusterValues.ClusterId, 32))
            {
                Fail("clusterValues.clusterID", "must be 64 lowercase hex digits");
            }
            if (!WorkspaceFile.IsHex(ClusterValues.MeasurementSalt, 32))
            {
                Fail("clusterValues.measurementSalt", "must be 64 lowercase hex digits");
            }
        }
    }

    private static void CheckLoopback(string? endpoint, string field, Action<string, string> fail)
    {
        if (string.IsNullOrWhiteSpace(endpoint))
        {
            fail(field, "missing");
            return;
        }
        if (!System.Net.IPAddress.TryParse(endpoint, out var address) || !System.Net.IPAddress.IsLoopback(address))
        {
            fail(field, $"\"{endpoint}\" is not a loopback address (local clusters live on 127.0.0.0/8)");
        }
    }
}

public sealed class InfrastructureSection
{
    public string Uid { get; set; } = "";

    public string Name { get; set; } = "";

    /// <summary>The load balancer's address the CLI uses (recover --endpoint default).</summary>
    public string ClusterEndpoint { get; set; } = "";

    /// <summary>The load balancer's address nodes use.</summary>
    public string InClusterEndpoint { get; set; } = "";

    /// <summary>The local provider's block.</summary>
    public LocalInfrastructure? Local { get; set; }
}

public sealed class LocalInfrastructure
{
    /// <summary>The workspace's /24 inside 127.0.0.0/8, written "127.A.B".</summary>
    public string Subnet { get; set; } = "";

    /// <summary>The provider's metadata and control API.</summary>
    public string MetadataEndpoint { get; set; } = "";

    public static bool IsLoopbackSubnet(string? subnet)
    {
        var parts = subnet?.Split('.') ?? [];
        return parts.Length == 3 && parts[0] == "127"
            && parts.Skip(1).All(p => p.Length is > 0 and <= 3 && p.All(char.IsAsciiDigit) && int.Parse(p, System.Globalization.CultureInfo.InvariantCulture) <= 255);
    }
}

public sealed class ClusterValuesSection
{
    /// <summary>HKDF(measurement secret, measurement salt, "key-clusterID"), lowercase hex.</summary>
    [YamlDotNet.Serialization.YamlMember(Alias = "clusterID")]
    public string? ClusterId { get; set; }

    /// <summary>32 random bytes made at init, lowercase hex.</summary>
    public string? MeasurementSalt { get; set; }
}
