using System.Security.Cryptography;
using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Cloud;
using Asterism.Crypto;
using Asterism.Disk;
using Asterism.JoinService;
using Asterism.Logging;
using Asterism.Node.Boot;
using Asterism.Node.BootProgress;
using Asterism.Node.Etcd;
using Asterism.Node.Recovery;
using Asterism.Node.Rejoin;
using Asterism.Node.Rotation;
using Asterism.Node.Services;
using Asterism.Node.State;
using Asterism.Node.Tickets;
using Asterism.Node.Unlock;
using Asterism.Protocol;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Asterism.Node;

/// <summary>
/// One node's life: measured boot, the state disk's first boot or reboot (ARCHITECTURE.md §4), then the node
/// services until the process is told to stop. A disk whose token says initialized is never reformatted. The steps
/// are marked "Boot flow N" as the README's Boot flow (and ARCHITECTURE.md §4) number them.
/// </summary>
public sealed class NodeRuntime(NodeOptions options, ILoggerFactory loggers, TimeProvider time)
{
    private readonly ILogger _root = loggers.CreateLogger(NodeLog.Root.Category);
    private readonly ILogger _setup = loggers.CreateLogger(NodeLog.SetupManager.Category);
    private readonly BootStatusTracker _status = new(options, time);

    /// <summary>The etcd connection the cluster API's handlers use; attached once this node's etcd member runs.</summary>
    private readonly ControlPlaneAccess _controlPlane = new();

    public static string Version => typeof(NodeRuntime).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        // Boot flow 1: identity and measured boot, then the status service.
        var started = time.GetTimestamp();
        NodeLog.Root.StartingDiskMapper(_root, Version, "local", options.Name, options.Role.Name(), options.Variant);
        await using var attestation = await NodeAttestation.CreateAsync(options, time, cancellationToken);
        if (options.Variant == AttestationVariant.Simulated.Name)
        {
            var events = await ApplyMeasuredBootAsync(attestation.Pcrs, cancellationToken);
            NodeLog.Root.AppliedMeasuredBoot(_root, events, options.Variant);
        }
        using var metadata = new HttpMetadataClient(options.MetadataEndpoint);
        var endpoints = new MetadataJoinEndpoints(metadata, options.Address.ToString());
        WebApplication? statusHost = null;
        try
        {
            statusHost = await Listeners.StartAsync(options.Address, Ports.Status, loggers, NodeLog.StatusServer.Category,
                listen => listen.Protocols = HttpProtocols.Http2,
                services => services.AddSingleton(_status),
                app => app.MapGrpcService<StatusService>(),
                cancellationToken);

            // Boot flow 2: the state disk's header decides between reboot, refusal and first boot.
            var probe = StateDisk.Probe(options.DiskPath);
            StateDisk disk;
            NodeState state;
            ClusterSecrets? secrets;
            NodeStateDirectory directory;
            string unlockedBy;
            SecretBytes diskKey;
            switch (probe.Kind)
            {
                case StateDiskKind.Initialized:
                    disk = StateDisk.Open(options.DiskPath);
                    try
                    {
                        (state, secrets, directory, unlockedBy, diskKey) = await RebootAsync(disk, endpoints, attestation, cancellationToken);
                    }
                    catch
                    {
                        disk.Dispose();
                        throw;
                    }
                    break;
                case StateDiskKind.Invalid:
                    // A header we cannot trust may be an attack or a disk we must not wipe: fail closed, touch nothing.
                    NodeLog.Root.InvalidStateDisk(_root, probe.Message, probe.InvalidReason?.ToString());
                    _status.Error("state disk header is invalid: " + probe.Message);
                    return 1;
                default:
                    (disk, state, secrets, directory, diskKey) = await FirstBootAsync(endpoints, attestation, cancellationToken);
                    unlockedBy = "first boot";
                    break;
            }
            using (disk)
            using (secrets)
            using (var runningKey = new RunningDiskKey(diskKey))
            {
                try
                {
                    // Boot flow 3: the state filesystem is mounted and PCR 15 extended; serve.
                    NodeLog.SetupManager.StateFilesystemMounted(_setup, directory.Kind, directory.Root, directory.RemoveLeftovers());
                    return await RunServicesAsync(disk, runningKey, directory, state, secrets, metadata, attestation, started, unlockedBy, cancellationToken);
                }
                finally
                {
                    // The services that write into it have stopped (RunServicesAsync's finally): unmount, then the
                    // FUSE server and the key go with the mount.
                    await UnmountAsync(directory);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            NodeLog.Root.NodeStopping(_root);
            return 0;
        }
        finally
        {
            await Listeners.StopAsync(statusHost);
        }
    }

    /// <summary>
    /// The provider, acting as firmware, measured the node binary and boot arguments into boot-measurements.json
    /// beside the disk; a simulated node extends its fresh in-memory bank with them first thing, as firmware would
    /// have extended a TPM.
    /// </summary>
    private async Task<int> ApplyMeasuredBootAsync(IPcrBank pcrs, CancellationToken cancellationToken)
    {
        var path = Path.Combine(Path.GetDirectoryName(options.DiskPath) ?? ".", MeasuredBoot.FileName);
        if (!File.Exists(path))
        {
            return 0;
        }
        var measurements = MeasuredBoot.Read(path);
        foreach (var e in measurements.Events)
        {
            await pcrs.ExtendAsync(e.Pcr, Convert.FromHexString(e.Digest), cancellationToken);
        }
        return measurements.Events.Count;
    }

    /// <summary>Boot flow 2, first boot: format, take init or a join ticket, and let <see cref="FirstBootSetup"/> commit it.</summary>
    private async Task<(StateDisk, NodeState, ClusterSecrets?, NodeStateDirectory, SecretBytes)> FirstBootAsync(IJoinEndpointSource endpoints, NodeAttestation attestation, CancellationToken cancellationToken)
    {
        var passphrase = RandomNumberGenerator.GetBytes(KeyDerivation.KeyLength);
        // The disk's UUID is the one this node's certified identity owns: JoinServices and recover release its key
        // to this identity only.
        var disk = StateDisk.Format(options.DiskPath, options.DiskSize, passphrase, attestation.Identity.DiskUuid);
        _status.SetDiskUuid(disk.Uuid);
        NodeLog.SetupManager.PreparingNewStateDisk(_setup, disk.Uuid);
        var setup = new FirstBootSetup(disk, new MountedStateVolume(options), passphrase, options, attestation.Pcrs, loggers);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        WebApplication? initHost = null;
        try
        {
            // The provider gave the init target (control-plane-0) the init secret's hash: it takes init from the CLI
            // and no join ticket from anyone. Every other node joins and never serves init.
            var initSecretHash = InitSecretHash();
            Task join = Task.CompletedTask;
            if (initSecretHash is not null && options.Role == NodeRole.ControlPlane)
            {
                initHost = await Listeners.StartAsync(options.Address, Ports.Init, loggers, NodeLog.InitServer.Category,
                    listen => listen.UseAtlsServer(attestation.Issuer, o => o.LoggerFactory = loggers),
                    services => services.AddSingleton(new InitService(setup, disk.Uuid, initSecretHash, loggers)),
                    app => app.MapGrpcService<InitService>(),
                    cancellationToken);
            }
            else
            {
                join = new JoinClient(options, disk.Uuid, Rounds(endpoints), AttestedTickets(attestation), setup, loggers).RunAsync(stop.Token);
            }
            var result = await setup.Completed.WaitAsync(cancellationToken);
            await stop.CancelAsync();
            await join;
            return (disk, result.State, result.Secrets, result.Directory, result.DiskKey);
        }
        catch
        {
            if (setup.Completed.IsCompletedSuccessfully)
            {
                setup.Completed.Result.DiskKey.Dispose();
                await UnmountAsync(setup.Completed.Result.Directory);
            }
            disk.Dispose();
            throw;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(passphrase);
            // Let the init call's response reach the CLI before the listener goes away.
            await Listeners.StopAsync(initHost);
        }
    }

    /// <summary>The init secret's SHA-256 the provider left for the init target, or null for every other node.</summary>
    private byte[]? InitSecretHash()
    {
        var path = Path.Combine(options.NodeDirectory, Cloud.Local.NodeProvisioning.InitSecretHashFileName);
        if (!File.Exists(path))
        {
            return null;
        }
        var text = File.ReadAllText(path).Trim();
        if (text.Length != 64 || !text.All(char.IsAsciiHexDigitLower))
        {
            throw new InvalidDataException($"{path} does not hold a lowercase hex SHA-256");
        }
        return Convert.FromHexString(text);
    }

    /// <summary>
    /// Boot flow 2, reboot: the RecoveryServer (control planes) and the RejoinClient offer keys to one
    /// <see cref="KeyRace"/>, whose winner unlocked the disk; then PCR 15 is extended.
    /// </summary>
    private async Task<(NodeState, ClusterSecrets?, NodeStateDirectory, string UnlockedBy, SecretBytes DiskKey)> RebootAsync(StateDisk disk, IJoinEndpointSource endpoints, NodeAttestation attestation, CancellationToken cancellationToken)
    {
        _status.SetDiskUuid(disk.Uuid);
        NodeLog.SetupManager.PreparingExistingStateDisk(_setup, disk.Uuid);
        if (disk.Uuid != attestation.Identity.DiskUuid)
        {
            // No JoinService and no operator would release this disk's key to this identity: say so instead of waiting.
            throw new InvalidOperationException($"state disk {disk.Uuid} does not belong to this node's certified identity {attestation.Identity.Name} (which owns {attestation.Identity.DiskUuid})");
        }
        var recoveryEndpoint = $"{options.Address}:{Ports.Recovery}";
        NodeLog.SetupManager.WaitingForDecryptionKey(_setup, disk.Uuid, recoveryEndpoint);
        var race = new KeyRace(new MountedStateVolume(options));
        var warmup = new RecoveryWarmup();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        WebApplication? recoveryHost = null;
        Task waiting = Task.CompletedTask;
        var recoveryLog = loggers.CreateLogger(NodeLog.RecoveryServer.Category);
        try
        {
            if (options.Role == NodeRole.ControlPlane)
            {
                NodeLog.RecoveryServer.Starting(recoveryLog);
                var identity = new RecoveryIdentity(disk.Uuid, options.Name, options.Role.Name());
                recoveryHost = await Listeners.StartAsync(options.Address, Ports.Recovery, loggers, NodeLog.RecoveryServer.Category,
                    listen => listen.UseAtlsServer(attestation.Issuer, o => o.LoggerFactory = loggers),
                    services => services.AddSingleton(new RecoveryServer(race, identity, loggers, time, warmup)),
                    app => app.MapGrpcService<RecoveryServer>(),
                    cancellationToken);
            }
            else
            {
                NodeLog.RecoveryServer.SkippedOnWorker(recoveryLog);
            }
            var rejoin = new RejoinClient(disk.Uuid, Rounds(endpoints), AttestedTickets(attestation), race, _status, loggers).RunAsync(stop.Token);
            waiting = WarmUpThenWaitAsync(recoveryHost is not null, warmup, recoveryEndpoint, attestation, race, recoveryLog, stop.Token);
            var (keys, state, directory) = await race.Winner.WaitAsync(cancellationToken);
            try
            {
                await stop.CancelAsync();
                await waiting;
                // Stop serving recovery before PCR 15 moves (as Constellation's RecoveryServer stops once it has the key):
                // a recover call routed here meanwhile would otherwise be refused for PCR 15 instead of finding no server.
                await Listeners.StopAsync(recoveryHost);
                recoveryHost = null;
                using (keys)
                {
                    await rejoin;
                    if (state.Role != options.Role)
                    {
                        // The disk is the authority on what this node is: never serve recovery or keys under a role the
                        // boot arguments claim but the disk does not confirm.
                        throw new InvalidOperationException($"the state disk belongs to a {state.Role.Name()} node, but the node was started as {options.Role.Name()}");
                    }
                    var clusterId = state.ClusterId;
                    await attestation.Pcrs.MeasureEventAsync(Measurements.ClusterIdIndex, clusterId, cancellationToken);
                    var secrets = state.Role == NodeRole.ControlPlane ? NodeState.ReadClusterSecrets(directory, state) : null;
                    // The running node keeps the key keyslot 0 opened with: a rotation moves the keyslot from it.
                    return (state, secrets, directory, keys.Source, SecretBytes.CopyOf(keys.DiskKey.Span));
                }
            }
            catch
            {
                await UnmountAsync(directory);
                throw;
            }
        }
        catch (OperationCanceledException) when (race.Winner.IsCompletedSuccessfully && cancellationToken.IsCancellationRequested)
        {
            // Stopped while the winning offer was being taken: its mount must not outlive the node.
            await UnmountAsync(race.Winner.Result.Directory);
            throw;
        }
        finally
        {
            await stop.CancelAsync();
            await waiting;
            await Listeners.StopAsync(recoveryHost);
        }
    }

    /// <summary>How long the warm-up may take before the node says it waits anyway (a loaded machine; a slow TPM quote).</summary>
    private static readonly TimeSpan WarmUpLimit = TimeSpan.FromSeconds(10);

    /// <summary>
    /// On a control plane, runs <see cref="RecoveryWarmup"/> against its own recovery listener, then says the node waits
    /// for its key. The status comes only after the listener is bound (and warm): `recover` pushes to nodes whose
    /// status says they wait, and a status that ran ahead of the listener made it dial a closed port under load and
    /// name the node as failed. Rejoin runs meanwhile; a warm-up failure is logged and changes nothing else (the real
    /// call then runs cold). Never throws.
    /// </summary>
    private async Task WarmUpThenWaitAsync(bool serving, RecoveryWarmup warmup, string endpoint, NodeAttestation attestation, KeyRace race, ILogger log, CancellationToken cancellationToken)
    {
        if (serving)
        {
            try
            {
                var took = await warmup.RunAsync(endpoint, attestation, race, WarmUpLimit, cancellationToken);
                NodeLog.RecoveryServer.WarmedUp(log, (long)took.TotalMilliseconds);
            }
            catch (Exception e)
            {
                // Rejoin won meanwhile or the node stops: nothing to warm any more, and no warning.
                if (!race.IsDecided && !cancellationToken.IsCancellationRequested)
                {
                    NodeLog.RecoveryServer.WarmUpFailed(log, e.GetType().Name + ": " + e.Message);
                }
            }
        }
        if (!race.IsDecided && !cancellationToken.IsCancellationRequested)
        {
            _status.WaitingForKey();
        }
    }

    /// <summary>Unmounts the state filesystem; a failure is logged (the provider's crash cleanup removes what is left).</summary>
    private async Task UnmountAsync(NodeStateDirectory directory)
    {
        try
        {
            await directory.DisposeAsync();
            NodeLog.SetupManager.StateFilesystemUnmounted(_setup, directory.Root);
        }
        catch (Exception e) when (e is IOException or StateFs.StateFilesystemException or InvalidOperationException)
        {
            NodeLog.SetupManager.StateFilesystemUnmountFailed(_setup, directory.Root, e.GetType().Name + ": " + e.Message);
        }
    }

    /// <summary>Join and rejoin ask JoinServices round after round with the node's interval and per-call timeout.</summary>
    private TicketRounds Rounds(IJoinEndpointSource endpoints) => new(endpoints, options.RejoinInterval, options.RejoinTimeout, time, quickRetries: true);

    private AttestedTicketClient AttestedTickets(NodeAttestation attestation) => new(attestation, options.RejoinTimeout, loggers, time);

    /// <summary>
    /// The cluster API (6443) with mutual TLS under the cluster CA, on a control plane that holds the CA; its operations
    /// reach etcd through <see cref="_controlPlane"/> once the node attaches a connection.
    /// </summary>
    private async Task StartClusterApiAsync(List<WebApplication> hosts, NodeStateDirectory directory, CancellationToken cancellationToken)
    {
        var log = loggers.CreateLogger(NodeLog.ClusterApi.Category);
        var credentials = ClusterApi.LoadServerCredentials(directory.Root, options.Name, options.Address);
        if (credentials is not { } tls)
        {
            NodeLog.ClusterApi.NoClusterCa(log, directory.PathOf(ClusterApi.CaFolder));
            return;
        }
        hosts.Add(await Listeners.StartAsync(options.Address, Ports.ClusterApi, loggers, NodeLog.ClusterApi.Category,
            listen => ClusterApi.UseMutualTls(listen, tls.Server, tls.Ca),
            services => services.AddSingleton(new ClusterApiService(_controlPlane, options.Name, loggers)),
            app => app.MapGrpcService<ClusterApiService>(),
            cancellationToken));
    }

    /// <summary>Boot flow 3: the workload API on every node; the JoinService and cluster API on control planes.</summary>
    private async Task<int> RunServicesAsync(StateDisk disk, RunningDiskKey runningKey, NodeStateDirectory directory, NodeState state, ClusterSecrets? secrets, IMetadataClient metadata, NodeAttestation attestation, long started, string unlockedBy, CancellationToken cancellationToken)
    {
        var hosts = new List<WebApplication>();
        using var stopRotation = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var rotation = Task.CompletedTask;
        NodeEtcd? etcd = null;
        KeyReleaseGate? gate = null;
        var etcdLog = loggers.CreateLogger(NodeLog.Etcd.Category);
        try
        {
            var bootCount = WorkloadApi.CountBoot(directory);
            var workloadLog = loggers.CreateLogger(NodeLog.Workload.Category);
            var workloadCredential = WorkloadApi.LoadVerifier(options.NodeDirectory, workloadLog);
            // Cleartext, so HTTP/1.1 only: without TLS Kestrel cannot negotiate HTTP/2 and warned on every boot.
            hosts.Add(await Listeners.StartAsync(options.Address, Ports.Workload, loggers, NodeLog.Workload.Category,
                listen => listen.Protocols = HttpProtocols.Http1,
                _ => { },
                app => WorkloadApi.Map(app, directory, options.Name, workloadCredential, workloadLog, options.Role == NodeRole.ControlPlane ? _controlPlane : null),
                cancellationToken));
            if (options.Role == NodeRole.ControlPlane && secrets is not null)
            {
                etcd = await StartEtcdAsync(directory, attestation, unlockedBy, etcdLog, cancellationToken);
                // The cluster API's registry, revoke, remove and audit operations go through this node's etcd client.
                _controlPlane.Secrets = secrets;
                _controlPlane.Attach(etcd.Connection);
                gate = new KeyReleaseGate(etcd.Connection, directory.PathOf(NodeEtcd.CaFolder), loggers, time)
                {
                    PeerAddressResolver = async (name, ct) => (await metadata.ListAsync(ct)).FirstOrDefault(i => i.Name == name && i.Role == "control-plane")?.Address,
                };
                hosts.Add(await JoinListeners.StartJoinServiceAsync(options.Address, Ports.JoinService, attestation.Issuer, secrets, gate, loggers, cancellationToken));
                // Running nodes of this cluster ask here for their next disk key (never on 30090, whose policy is PCR 15 = 0).
                var rotationGate = new RotationGate(etcd.Connection, secrets, state.ClusterId, loggers, time);
                hosts.Add(await JoinListeners.StartRotationAsync(options.Address, Ports.Rotation, attestation.Issuer, secrets.Policy, state.ClusterId, rotationGate, loggers, cancellationToken));
                await StartClusterApiAsync(hosts, directory, cancellationToken);
            }
            // Every booted node follows master-secret rotations (issue #16 item 4); a control plane also promotes its
            // next secret once the rotation completed, checked first thing in every round (so at boot too).
            var step = new KeyRotationStep(disk, directory, state, runningKey, secrets, loggers);
            var connection = etcd?.Connection;
            Func<CancellationToken, Task<int>>? clusterGeneration = connection is null
                ? null
                : ct => new Asterism.ControlPlane.KeyRotation(connection, time).CurrentGenerationAsync(ct);
            rotation = new RotationLoop(step, new MetadataRotationEndpoints(metadata), new AttestedRotationClient(attestation, options.RejoinTimeout, loggers, time),
                clusterGeneration, options.RotationInterval, options.RejoinTimeout, loggers, time).RunAsync(stopRotation.Token);
            _status.Booted();
            var durationMs = (long)time.GetElapsedTime(started).TotalMilliseconds;
            NodeLog.Root.NodeBooted(_root, state.Role.Name(), durationMs, bootCount);
            await Task.Delay(Timeout.Infinite, cancellationToken);
            return 0;
        }
        finally
        {
            // Before etcd stops and the state filesystem is unmounted: the loop writes there and moves the keyslot.
            await stopRotation.CancelAsync();
            await rotation;
            foreach (var host in hosts)
            {
                await Listeners.StopAsync(host);
            }
            if (etcd is not null)
            {
                // Before the state filesystem is unmounted (the caller's finally): etcd's data lives on it.
                _status.SetEtcd(null);
                _controlPlane.Detach();
                await etcd.DisposeAsync();
                NodeLog.Etcd.Stopped(etcdLog, options.Name);
            }
            gate?.Dispose();
        }
    }

    /// <summary>
    /// Starts this control plane's etcd member (issue #15). Init and join wait for it (a one-member cluster, or a learner
    /// the JoinService promotes); a reboot does not — with the others down the member waits for them, and the node's
    /// services (and its "no quorum" answers) must run meanwhile. Init registers the node and audits the new member; a
    /// rebooted control plane records in the audit log which path unlocked it, once etcd has a quorum.
    /// </summary>
    private async Task<NodeEtcd> StartEtcdAsync(NodeStateDirectory directory, NodeAttestation attestation, string unlockedBy, ILogger etcdLog, CancellationToken cancellationToken)
    {
        var etcdStarted = time.GetTimestamp();
        var etcd = await NodeEtcd.StartAsync(directory, options.Name, options.Address, waitHealthy: unlockedBy == "first boot", etcdLog, cancellationToken);
        try
        {
            _status.SetEtcd(etcd.QuorumAsync);
            if (etcd.State == Asterism.ControlPlane.ClusterState.New)
            {
                var identity = attestation.Identity;
                var registry = new Asterism.ControlPlane.NodeRegistry(etcd.Connection);
                if (await registry.GetAsync(options.Name, cancellationToken) is null)
                {
                    var audit = new Asterism.ControlPlane.AuditLog(etcd.Connection, time);
                    await audit.AppendAsync(Asterism.ControlPlane.AuditKind.MembershipChange, options.Name, "init: one-member etcd cluster at " + options.Address, cancellationToken);
                    await registry.RegisterAsync(new Asterism.ControlPlane.NodeRecord(options.Name, Asterism.ControlPlane.NodeRole.ControlPlane, Guid.Parse(identity.DiskUuid),
                        Convert.FromHexString(identity.CertificateFingerprint), time.GetUtcNow()), cancellationToken);
                    NodeLog.Etcd.Registered(etcdLog, options.Name);
                }
            }
            _ = ReportRunningAsync(etcd, unlockedBy, etcdStarted, etcdLog);
            return etcd;
        }
        catch
        {
            _status.SetEtcd(null);
            await etcd.DisposeAsync();
            throw;
        }
    }

    /// <summary>Logs when the member is healthy; after a reboot appends a <c>Recovery</c> audit entry naming the unlock path.</summary>
    private async Task ReportRunningAsync(NodeEtcd etcd, string unlockedBy, long etcdStarted, ILogger etcdLog)
    {
        if (await etcd.Member is not { } member)
        {
            return;
        }
        NodeLog.Etcd.Running(etcdLog, options.Name, etcd.State.ToString(), (long)time.GetElapsedTime(etcdStarted).TotalMilliseconds);
        if (unlockedBy == "first boot")
        {
            return;
        }
        var path = unlockedBy == "recovery" ? "operator recovery" : "rejoin";
        var audit = new Asterism.ControlPlane.AuditLog(etcd.Connection, time);
        // The member is healthy, so a quorum answered a moment ago; a few tries cover a leader change meanwhile.
        for (var attempt = 0; attempt < 5 && !member.HasExited; attempt++)
        {
            try
            {
                await audit.AppendAsync(Asterism.ControlPlane.AuditKind.Recovery, options.Name, "unlocked by " + path);
                NodeLog.Etcd.RecoveryRecorded(etcdLog, path);
                return;
            }
            catch (Exception e) when (e is Asterism.ControlPlane.ControlPlaneException or Grpc.Core.RpcException or ObjectDisposedException)
            {
                NodeLog.Etcd.WriteFailed(etcdLog, "recovery audit entry", e.Message);
                await Task.Delay(TimeSpan.FromSeconds(1), time);
            }
        }
    }
}
