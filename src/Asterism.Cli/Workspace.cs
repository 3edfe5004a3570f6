using Asterism.Attestation;
using Asterism.Cloud;
using Asterism.Config;
using Asterism.Crypto;

namespace Asterism.Cli;

/// <summary>The operator's workspace: config, state, master secret, and the local provider's files.</summary>
public sealed class Workspace(string directory)
{
    public string Directory { get; } = directory;

    public string ConfigPath => Path.Combine(Directory, ClusterConfig.FileName);

    public string StatePath => Path.Combine(Directory, ClusterState.FileName);

    public string MasterSecretPath => Path.Combine(Directory, MasterSecret.DefaultFileName);

    /// <summary>The init secret `create` made (0600); control-plane-0 takes init only with it.</summary>
    public string InitSecretPath => Path.Combine(Directory, "asterism-init-secret");

    /// <summary>The node record `init` writes: each node's name, role and disk UUID, MAC'd with a key from the master secret.</summary>
    public string NodeRecordPath => Path.Combine(Directory, Recovery.NodeRecord.FileName);

    public CloudWorkspace Cloud => new(Directory);

    /// <summary>Fails unless the directory holds a cluster created by <c>asterism create</c>.</summary>
    public void RequireCluster()
    {
        if (!System.IO.Directory.Exists(Directory))
        {
            throw new CliError($"workspace {Directory} does not exist; pass the right -C DIR or run 'asterism create' there");
        }
        if (!File.Exists(ConfigPath) || !File.Exists(StatePath))
        {
            throw new CliError($"no cluster in workspace {Directory} ({ClusterConfig.FileName} or {ClusterState.FileName} missing); run 'asterism create' first or pass -C DIR");
        }
    }

    public ClusterConfig LoadConfig()
    {
        try
        {
            return ClusterConfig.Load(ConfigPath);
        }
        catch (WorkspaceFileException ex)
        {
            throw new CliError(ex.Message);
        }
    }

    public ClusterState LoadState()
    {
        try
        {
            return ClusterState.Load(StatePath);
        }
        catch (WorkspaceFileException ex)
        {
            throw new CliError(ex.Message);
        }
    }

    /// <summary>The names of the workspace's instances: the provider gives each its own directory.</summary>
    public IReadOnlyList<string> NodeNames() =>
        System.IO.Directory.Exists(Cloud.InstancesDir)
            ? System.IO.Directory.GetDirectories(Cloud.InstancesDir).Select(d => Path.GetFileName(d)!).Order(StringComparer.Ordinal).ToList()
            : [];

    /// <summary>Fails with the known names unless every name is an instance of this workspace (before anything is asked of the provider).</summary>
    public void RequireNodes(IEnumerable<string> names)
    {
        var known = NodeNames();
        var unknown = names.Where(n => !known.Contains(n, StringComparer.Ordinal)).ToList();
        if (unknown.Count > 0)
        {
            var list = known.Count > 0 ? string.Join(", ", known) : "none";
            throw new CliError($"unknown node{(unknown.Count > 1 ? "s" : "")} {string.Join(", ", unknown.Select(n => $"\"{n}\""))}; known nodes: {list}");
        }
    }

    /// <summary>Connects to the running local provider or fails with the reason it is not reachable.</summary>
    public LocalCloudClient ConnectProvider()
    {
        RequireCluster();
        var client = LocalCloudClient.TryConnect(Directory, out var reason);
        return client ?? throw new CliError($"the local provider of this workspace is not running ({reason}); 'asterism provider start' restarts it and adopts the nodes still running");
    }

    public static MasterSecret LoadMasterSecret(string path)
    {
        try
        {
            return MasterSecret.Load(path);
        }
        catch (MasterSecretException ex)
        {
            throw new CliError(ex.Message);
        }
    }

    /// <summary>Writes a new secret file (0600, never overwriting); a failure is one <see cref="CliError"/>.</summary>
    public static void SaveMasterSecret(MasterSecret master, string path)
    {
        ArgumentNullException.ThrowIfNull(master);
        try
        {
            master.Save(path);
        }
        catch (MasterSecretException ex)
        {
            throw new CliError(ex.Message);
        }
    }

    /// <summary>The attestation policy of asterism-conf.yaml.</summary>
    public static AttestationPolicy PolicyOf(ClusterConfig config)
    {
        if (!AttestationVariant.TryParse(config.Attestation.Variant, out var variant))
        {
            throw new CliError($"{ClusterConfig.FileName}: attestation.variant: unknown variant \"{config.Attestation.Variant}\"");
        }
        var measurements = new Measurements(config.Attestation.Measurements.Select(m =>
            new KeyValuePair<int, Measurement>(m.Key, new Measurement(Convert.FromHexString(m.Value.Expected), m.Value.WarnOnly))));
        return new AttestationPolicy
        {
            Variant = variant,
            Measurements = measurements,
            TrustAnyKey = config.Attestation.TrustAnyKey,
            TrustedKeys = config.Attestation.TrustedKeys ?? [],
            ProviderCa = config.Attestation.ProviderCa,
        };
    }

    /// <summary>Warnings an operator must see about the attestation policy in use (trustAnyKey is warned about by every command, in Program).</summary>
    public static IEnumerable<string> PolicyWarnings(AttestationPolicy policy)
    {
        if (policy.Variant == AttestationVariant.Simulated)
        {
            yield return "attestation variant \"simulated\" is software-only: for local clusters and tests, never a security boundary";
        }
    }
}
