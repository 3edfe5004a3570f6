using Asterism.Protocol;
using Microsoft.Extensions.Logging;

namespace Asterism.Cloud.Local;

/// <summary>Settings of one <see cref="LocalCloudProvider"/>.</summary>
public sealed record LocalCloudOptions
{
    public required string WorkspaceDir { get; init; }

    public LoadBalancerOptions LoadBalancer { get; init; } = new();

    /// <summary>How long a stop waits after SIGTERM before SIGKILL.</summary>
    public TimeSpan StopGracePeriod { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Firmware override; null picks it from the spec's variant. The provider disposes it when it stops.</summary>
    public IFirmware? Firmware { get; init; }

    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>
    /// Restart after a provider died (<c>asterism provider start</c>): take over the nodes it left running (same PID,
    /// start time and command line) and start no other; without it every stale node is killed and all start fresh.
    /// </summary>
    public bool Adopt { get; init; }
}

/// <summary>
/// The local provider: runs the instances of a workspace's spec.json as node processes on their own loopback
/// addresses, serves the metadata API, and load-balances the control plane. Embeddable (tests, benchmarks);
/// `asterism-cloud` is a thin host around it.
/// </summary>
public sealed class LocalCloudProvider : IAsyncDisposable, ICloudControl
{
    private readonly LocalCloudOptions _options;
    private readonly ILogger _logger;
    private readonly CloudWorkspace _workspace;
    // Copy-on-write: an added control plane swaps in a new array, so readers never see a list mid-change.
    private volatile InstanceProcess[] _instances;
    private readonly IFirmware _instanceFirmware;
    private readonly ApiCredential _credential;
    private readonly ILoggerFactory _loggerFactory;
    private readonly TcpLoadBalancer _loadBalancer;
    private readonly MetadataServer _server;
    private readonly TaskCompletionSource _shutdownRequested = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly SemaphoreSlim _stopLock = new(1, 1);
    private bool _stopped;
    private readonly IAsyncDisposable? _firmware;

    private readonly ProviderCa _ca;

    private LocalCloudProvider(LocalCloudOptions options, CloudSpec spec, IFirmware firmware, ProviderCa ca, ApiCredential credential, ILoggerFactory loggerFactory)
    {
        _ca = ca;
        _options = options;
        _instanceFirmware = firmware;
        _credential = credential;
        _loggerFactory = loggerFactory;
        _firmware = firmware as IAsyncDisposable;
        _logger = loggerFactory.CreateLogger("Asterism.Cloud.Provider");
        _workspace = new CloudWorkspace(options.WorkspaceDir);
        Spec = spec;
        Subnet = spec.ParsedSubnet();
        _instances = [.. spec.PlanInstances().Select(p => new InstanceProcess(spec, p, _workspace, firmware, ca, options.Time, loggerFactory.CreateLogger("Asterism.Cloud.Instance")))];
        _loadBalancer = new TcpLoadBalancer(
            Subnet.LoadBalancerAddress,
            Ports.LoadBalanced,
            _instances.Where(i => i.Plan.Role == InstanceRole.ControlPlane).Select(i => System.Net.IPAddress.Parse(i.Plan.Address)),
            options.LoadBalancer,
            options.Time,
            loggerFactory.CreateLogger("Asterism.Cloud.LoadBalancer"));
        _server = new MetadataServer(Subnet.ProviderAddress, Ports.Metadata, this, credential.Verifier(), loggerFactory);
    }

    public CloudSpec Spec { get; private set; }
    public CloudSubnet Subnet { get; }
    public string MetadataUrl => _server.Url;
    public string LoadBalancerAddress => Subnet.LoadBalancerAddress.ToString();
    public TcpLoadBalancer LoadBalancer => _loadBalancer;

    /// <summary>Completes when a client asked for shutdown through the API.</summary>
    public Task ShutdownRequested => _shutdownRequested.Task;

    /// <summary>
    /// Loads spec.json, starts the metadata API, the load balancer and every instance, then writes cloud.json.
    /// On any failure everything already started is stopped again before the exception propagates.
    /// </summary>
    public static async Task<LocalCloudProvider> StartAsync(LocalCloudOptions options, ILoggerFactory loggerFactory, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        var workspace = new CloudWorkspace(options.WorkspaceDir);
        var spec = CloudSpec.Load(workspace.SpecPath);
        var firmware = options.Firmware ?? spec.Variant switch
        {
            CloudSpec.SimulatedVariant => new SimulatedFirmware(),
            CloudSpec.TpmVariant => (IFirmware)new SwtpmFirmware(workspace.CloudDir, loggerFactory.CreateLogger("Asterism.Cloud.Firmware")),
            _ => throw new CloudConfigException($"variant '{spec.Variant}' has no firmware in this provider"),
        };
        workspace.EnsurePrivateDirectories();
        OwnerOnly.CreateDirectory(workspace.InstancesDir);
        var credential = ApiCredential.LoadOrCreate(workspace.CredentialPath);
        var ca = ProviderCa.LoadOrCreate(workspace.CloudDir, options.Time);
        var provider = new LocalCloudProvider(options, spec, firmware, ca, credential, loggerFactory);
        try
        {
            foreach (var instance in provider._instances)
            {
                await instance.AdoptOrKillStaleAsync(options.Adopt, cancellationToken).ConfigureAwait(false);
            }
            await provider._server.StartAsync(cancellationToken).ConfigureAwait(false);
            await provider._loadBalancer.StartAsync(cancellationToken).ConfigureAwait(false);
            foreach (var plan in spec.PlanInstances())
            {
                PrepareInstanceDirectory(workspace, plan.Name, credential);
            }
            // Adopting, the instances that were not left running stay stopped: the operator may have stopped them.
            if (!options.Adopt)
            {
                var started = await provider.PowerAsync(PowerAction.Start, null, cancellationToken).ConfigureAwait(false);
                if (started.Results.FirstOrDefault(r => r.Error is not null) is { } failed)
                {
                    throw new CloudConfigException($"instance {failed.Name} failed to start: {failed.Error}");
                }
            }
            CloudJson.WriteFileAtomic(workspace.StatePath, new CloudState
            {
                Pid = Environment.ProcessId,
                ProcessStartTicks = ProcessIdentity.Of(Environment.ProcessId)?.StartTicks ?? 0,
                MetadataUrl = provider.MetadataUrl,
                LoadBalancer = provider.LoadBalancerAddress,
                Subnet = spec.Subnet,
                StartedAt = options.Time.GetUtcNow(),
            });
            Log.ProviderReady(provider._logger, provider.MetadataUrl, provider.LoadBalancerAddress, provider._instances.Length);
            return provider;
        }
        catch
        {
            await provider.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// The instance's directories 0700 and its serial console 0600 before anything writes there (the console is
    /// created by a shell redirection, whose mode would otherwise follow the umask), and SHA-256 of the API
    /// credential into the node directory so the node can check workload callers without holding the token.
    /// </summary>
    private static void PrepareInstanceDirectory(CloudWorkspace workspace, string name, ApiCredential credential)
    {
        OwnerOnly.CreateDirectory(workspace.InstanceDir(name));
        OwnerOnly.CreateDirectory(workspace.NodeDir(name));
        OwnerOnly.Touch(workspace.ConsoleLogPath(name));
        credential.WriteHashFile(workspace.CredentialHashPath(name));
    }

    public IReadOnlyList<InstanceInfo> Instances() => [.. _instances.Select(i => i.Snapshot())];

    /// <summary>PIDs of the node processes currently running.</summary>
    public IReadOnlyList<int> ProcessIds() => [.. Instances().Where(i => i.Pid is not null).Select(i => i.Pid!.Value)];

    public IReadOnlyList<string> UnknownNames(IEnumerable<string> names) =>
        [.. names.Where(n => _instances.All(i => i.Plan.Name != n)).Distinct(StringComparer.Ordinal)];

    /// <summary>Applies an action to the named instances (null = all) in parallel; unknown names throw before anything changes.</summary>
    public async Task<PowerResponse> PowerAsync(PowerAction action, IReadOnlyList<string>? names, CancellationToken cancellationToken)
    {
        if (names is not null && UnknownNames(names) is { Count: > 0 } unknown)
        {
            throw new ArgumentException($"unknown instance(s): {string.Join(", ", unknown)}", nameof(names));
        }
        var targets = names is null ? _instances : [.. _instances.Where(i => names.Contains(i.Plan.Name, StringComparer.Ordinal))];
        var results = await Task.WhenAll(targets.Select(i => i.ApplyAsync(action, _options.StopGracePeriod, cancellationToken))).ConfigureAwait(false);
        foreach (var r in results)
        {
            Log.PowerApplied(_logger, r.Name, r.Action, r.Changed, r.Power);
        }
        return new PowerResponse { Results = results };
    }

    public void RequestShutdown() => _shutdownRequested.TrySetResult();

    /// <summary>
    /// Adds one control-plane instance (spec.json's <see cref="CloudSpec.AddedControlPlanes"/> + 1, saved first so a
    /// restarted provider knows it), prepares its directory and starts it. It is not added to the load balancer, whose
    /// backends are fixed while the provider runs; nodes find JoinServices through the instance list.
    /// </summary>
    public async Task<InstanceInfo> AddControlPlaneAsync(CancellationToken cancellationToken)
    {
        // Under the stop lock: an instance started after StopAsync enumerated the instances would outlive the provider.
        await _stopLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_stopped)
            {
                throw new CloudConfigException("the provider is stopping");
            }
            var spec = Spec with { AddedControlPlanes = Spec.AddedControlPlanes + 1 };
            var plan = spec.PlanInstances()[^1];
            spec.Save(_workspace.SpecPath);
            Spec = spec;
            PrepareInstanceDirectory(_workspace, plan.Name, _credential);
            var instance = new InstanceProcess(spec, plan, _workspace, _instanceFirmware, _ca, _options.Time, _loggerFactory.CreateLogger("Asterism.Cloud.Instance"));
            _instances = [.. _instances, instance];
            var started = await instance.ApplyAsync(PowerAction.Start, _options.StopGracePeriod, cancellationToken).ConfigureAwait(false);
            Log.PowerApplied(_logger, started.Name, started.Action, started.Changed, started.Power);
            return instance.Snapshot();
        }
        finally
        {
            _stopLock.Release();
        }
    }

    /// <summary>Stops every instance (SIGTERM, grace, SIGKILL), the load balancer and the API, and removes cloud.json. Idempotent.</summary>
    public async Task StopAsync()
    {
        await _stopLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_stopped)
            {
                return;
            }
            _stopped = true;
            Log.ProviderStopping(_logger);
            await Task.WhenAll(_instances.Select(i => i.ShutdownAsync(_options.StopGracePeriod))).ConfigureAwait(false);
            if (_firmware is not null)
            {
                // TPMs (swtpm) are shut down after their nodes, cleanly.
                await _firmware.DisposeAsync().ConfigureAwait(false);
            }
            await _loadBalancer.DisposeAsync().ConfigureAwait(false);
            await _server.DisposeAsync().ConfigureAwait(false);
            _ca.Dispose();
            if (File.Exists(_workspace.StatePath) && IsOurs(_workspace.StatePath))
            {
                File.Delete(_workspace.StatePath);
            }
            Log.ProviderStopped(_logger);
        }
        finally
        {
            _stopLock.Release();
        }
    }

    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    private static bool IsOurs(string statePath)
    {
        try
        {
            return CloudState.Load(statePath).Pid == Environment.ProcessId;
        }
        catch (CloudConfigException)
        {
            return false;
        }
    }
}
