using System.CommandLine;
using System.Security.Cryptography;
using Asterism.Cloud;
using Asterism.Cloud.Local;
using Asterism.Config;
using Asterism.Protocol;

namespace Asterism.Cli.Commands;

/// <summary><c>asterism create</c>: writes the workspace files, starts the local provider and its instances.</summary>
public static class CreateCommand
{
    /// <summary>
    /// Node arguments for local clusters: rejoin rounds every 2 s (Constellation's 30 s suits clouds, not one machine).
    /// Each call may take 10 s: a mutual aTLS handshake with swtpm quotes on both ends took more than 2 s on two shared
    /// cores at load 50, every time, and a rebooted control plane then never rejoined beside two healthy ones.
    /// </summary>
    public static readonly string[] LocalNodeArgs = ["--rejoin-interval", "2s", "--rejoin-timeout", "10s", "--rotation-interval", "5s"];

    public static string MetadataUrl(CloudSubnet subnet) => $"http://{subnet.ProviderAddress}:{Ports.Metadata}";

    public static Command Create(GlobalOptions global)
    {
        var controlPlanes = new Option<int>("--control-planes") { Description = "Number of control-plane nodes", DefaultValueFactory = _ => 3 };
        var workers = new Option<int>("--workers") { Description = "Number of worker nodes", DefaultValueFactory = _ => 2 };
        var variant = new Option<string>("--variant") { Description = "Attestation variant: simulated or tpm", DefaultValueFactory = _ => "simulated" };
        variant.AcceptOnlyFromAmong("simulated", "tpm");
        var name = new Option<string?>("--name") { Description = "Cluster name (default: asterism-<uid>)" };
        var command = new Command("create", "Create a local cluster: workspace files, the local provider and its node instances")
        {
            controlPlanes, workers, variant, name,
        };
        command.SetAction(async (result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var stderr = result.InvocationConfiguration.Error;
            var workspace = new Workspace(global.WorkspaceOf(result));
            var cps = result.GetValue(controlPlanes);
            var ws = result.GetValue(workers);
            if (cps is < 1 or > 64)
            {
                throw new CliError("--control-planes must be between 1 and 64", 2);
            }
            if (ws is < 0 or > 128)
            {
                throw new CliError("--workers must be between 0 and 128", 2);
            }
            if (File.Exists(workspace.StatePath) || LocalCloudClient.TryConnect(workspace.Directory) is not null)
            {
                throw new CliError($"a cluster already exists in workspace {workspace.Directory} ({Asterism.Config.ClusterState.FileName}); run 'asterism terminate' first or use another -C DIR");
            }
            // terminate keeps the configuration and the master secret (without --purge): a new cluster here would
            // overwrite the one and reuse the other. Refuse and let the operator move them; nothing is changed.
            var kept = new[] { workspace.ConfigPath, workspace.MasterSecretPath }.Where(File.Exists).Select(Path.GetFileName).ToList();
            if (kept.Count > 0)
            {
                throw new CliError($"workspace {workspace.Directory} still holds {string.Join(" and ", kept)} of an earlier cluster; move {(kept.Count > 1 ? "them" : "it")} elsewhere to keep {(kept.Count > 1 ? "them" : "it")}, or use another -C DIR");
            }
            if (!Directory.Exists(workspace.Directory))
            {
                // A workspace we create is the operator's alone; an existing directory keeps its mode (it may be a
                // shared parent), while everything Asterism puts into it is 0600 or 0700.
                OwnerOnly.CreateDirectory(workspace.Directory);
            }
            var uid = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
            var clusterName = result.GetValue(name) ?? $"asterism-{uid}";
            var subnet = SubnetAllocator.PickFree();
            var spec = new CloudSpec
            {
                ClusterName = clusterName,
                Subnet = subnet.ToString(),
                Variant = result.GetValue(variant)!,
                ControlPlanes = cps,
                Workers = ws,
                NodeCommand = NodeBinary.Command(),
                NodeArgs = LocalNodeArgs,
                InitSecretSha256 = InitSecret.Create(workspace.InitSecretPath),
            };
            var problems = spec.Validate();
            if (problems.Count > 0)
            {
                throw new CliError("invalid cluster spec: " + string.Join("; ", problems));
            }
            // The provider CA certifies every instance's attestation key; its certificate is what the config trusts.
            string providerCa;
            using (var ca = ProviderCa.LoadOrCreate(workspace.Cloud.CloudDir))
            {
                providerCa = ca.CertificatePem;
            }
            var config = new ClusterConfig
            {
                Attestation = new AttestationSection { Variant = spec.Variant, ProviderCa = providerCa, Measurements = FetchMeasurementsCommand.Expected(spec) },
                Nodes = new NodesSection { ControlPlanes = cps, Workers = ws },
            };
            config.Save(workspace.ConfigPath);
            var state = new ClusterState
            {
                Infrastructure = new InfrastructureSection
                {
                    Uid = uid,
                    Name = clusterName,
                    ClusterEndpoint = subnet.LoadBalancerAddress.ToString(),
                    InClusterEndpoint = subnet.LoadBalancerAddress.ToString(),
                    Local = new LocalInfrastructure { Subnet = subnet.ToString(), MetadataEndpoint = MetadataUrl(subnet) },
                },
            };
            workspace.Cloud.EnsurePrivateDirectories();
            spec.Save(workspace.Cloud.SpecPath);
            state.Save(workspace.StatePath);
            using var cloud = await LocalCloudClient.StartProviderAsync(workspace.Directory, cancellationToken: cancellationToken);
            var instances = await cloud.ListAsync(cancellationToken);
            await stdout.WriteLineAsync($"Created cluster {clusterName} in {workspace.Directory} ({spec.Variant} attestation)");
            await stdout.WriteLineAsync($"  provider       {MetadataUrl(subnet)} (PID {cloud.State.Pid})");
            await stdout.WriteLineAsync($"  load balancer  {subnet.LoadBalancerAddress}");
            foreach (var instance in instances)
            {
                await stdout.WriteLineAsync($"  {instance.Name,-28} {instance.Role,-14} {instance.Address,-15} {instance.Power}");
            }
            await stdout.WriteLineAsync("Next: 'asterism init' initializes the cluster.");
            if (spec.Variant == "simulated")
            {
                await stderr.WriteLineAsync("Warning: attestation variant \"simulated\" is software-only: for local clusters and tests, never a security boundary");
            }
            return 0;
        });
        return command;
    }
}

/// <summary>Where the node binary is: asterism-node.dll next to the CLI.</summary>
public static class NodeBinary
{
    public static string Path => System.IO.Path.Combine(AppContext.BaseDirectory, "asterism-node.dll");

    public static IReadOnlyList<string> Command()
    {
        if (!File.Exists(Path))
        {
            throw new CliError($"asterism-node.dll not found next to the CLI in {AppContext.BaseDirectory}; build with ./asterism");
        }
        var host = Environment.ProcessPath is { } p && System.IO.Path.GetFileName(p) == "dotnet" ? p : "dotnet";
        return [host, Path];
    }
}
