using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Asterism.Cli;
using Asterism.Cli.Recovery;
using Asterism.Cloud;
using Asterism.Crypto;
using Asterism.Disk;
using Asterism.Protocol;
using Asterism.Protocol.NodeStatus;
using Asterism.Tests;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.EndToEnd.Tests.Infrastructure;

/// <summary>
/// One real local cluster shared by the ordered steps of a scenario class: `asterism create` (provider + node
/// processes on their own 127.x addresses) and `asterism init` in a fresh temporary workspace; helpers to reach the
/// nodes directly; and a cleanup that terminates the cluster and kills by PID anything of the workspace still alive.
/// Subclasses pick the attestation variant (one line per variant).
/// </summary>
public abstract class ClusterFixture : IAsyncLifetime
{
    /// <summary>Generous: the CI machine has 2 cores shared with other test projects.</summary>
    public static readonly TimeSpan BootTimeout = TimeSpan.FromSeconds(90);

    private static readonly HttpClient Http = new(new SocketsHttpHandler
    {
        UseProxy = false,
        ConnectTimeout = TimeSpan.FromSeconds(3),
        PooledConnectionLifetime = TimeSpan.Zero,
    })
    { Timeout = TimeSpan.FromSeconds(15) };

    private readonly Dictionary<string, string> _data = new(StringComparer.Ordinal);
    private string? _unhealthy;

    public abstract string Variant { get; }

    public virtual int ControlPlanes => 3;

    public virtual int Workers => 2;

    /// <summary>
    /// Whether the fixture runs `asterism init` after `create`. Scenarios that attack the cluster before init (the
    /// init API, a squatter on a join port) say false and run init themselves (<see cref="InitAsync"/>).
    /// </summary>
    public virtual bool InitAtStart => true;

    public string Workspace { get; private set; } = "";

    public CliDriver Cli { get; private set; } = null!;

    public CloudWorkspace Files => new(Workspace);

    public CliResult Created { get; private set; } = null!;

    public CliResult Initialized { get; private set; } = null!;

    /// <summary>The instances as created (names, roles and addresses never change).</summary>
    public IReadOnlyList<InstanceInfo> Instances { get; private set; } = [];

    public IReadOnlyList<InstanceInfo> ControlPlaneNodes => [.. Instances.Where(i => i.IsControlPlane)];

    public IReadOnlyList<InstanceInfo> WorkerNodes => [.. Instances.Where(i => !i.IsControlPlane)];

    /// <summary>Data written through the workload API: node name → (key → value).</summary>
    public IReadOnlyDictionary<string, string> Data => _data;

    public string MasterSecretPath => Path.Combine(Workspace, MasterSecret.DefaultFileName);

    public virtual async Task InitializeAsync()
    {
        Workspace = Directory.CreateTempSubdirectory("asterism-e2e-").FullName;
        Cli = new CliDriver(Workspace);
        try
        {
            Created = await Cli.RunOkAsync("create", "--control-planes", ControlPlanes.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--workers", Workers.ToString(System.Globalization.CultureInfo.InvariantCulture), "--variant", Variant);
            Instances = await ListAsync();
            if (InitAtStart)
            {
                await InitAsync();
            }
            Assert.Equal(ControlPlanes + Workers, Instances.Count);
        }
        catch
        {
            await CleanupAsync();
            throw;
        }
    }

    /// <summary>
    /// `asterism init` (must exit 0); remembered as <see cref="Initialized"/>. Waits up to 10 minutes for the nodes to
    /// boot unless the test names its own --timeout: the product's 120 s is for an operator's machine, and the suite
    /// asks whether the cluster boots, not how fast, on two cores shared at load 40.
    /// </summary>
    public async Task<CliResult> InitAsync(params string[] extra)
    {
        Initialized = await Cli.RunOkAsync(["init", .. extra.Contains("--timeout") ? [] : new[] { "--timeout", "10m" }, .. extra]);
        return Initialized;
    }

    public virtual async Task DisposeAsync()
    {
        await CleanupAsync();
        if (Environment.GetEnvironmentVariable("ASTERISM_E2E_KEEP") != "1" && Directory.Exists(Workspace))
        {
            Directory.Delete(Workspace, recursive: true);
        }
    }

    /// <summary>`asterism terminate`, then SIGKILL by PID for anything of this workspace still running.</summary>
    public async Task<IReadOnlyList<Processes.Info>> CleanupAsync()
    {
        if (LocalCloudClient.TryConnect(Workspace) is { } cloud)
        {
            using (cloud)
            {
                try
                {
                    await cloud.ShutdownAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
                }
                catch (Exception e) when (e is LocalCloudException or MetadataException or HttpRequestException or TaskCanceledException)
                {
                    // Fall through to killing by PID.
                }
            }
        }
        var left = Processes.Matching(Workspace);
        foreach (var p in left)
        {
            Processes.Kill(p.Pid);
        }
        await Processes.WaitGoneAsync(Workspace, TimeSpan.FromSeconds(10));
        // Nodes killed by PID could not unmount: remove their mounts before anyone deletes the workspace.
        await NodeMounts.CleanAllAsync(Files, CancellationToken.None);
        return left;
    }

    /// <summary>Processes of this workspace (provider, nodes) still alive.</summary>
    public IReadOnlyList<Processes.Info> LiveProcesses() => Processes.Matching(Workspace);

    public async Task<IReadOnlyList<InstanceInfo>> ListAsync()
    {
        using var cloud = LocalCloudClient.Connect(Workspace);
        return await cloud.ListAsync(CancellationToken.None);
    }

    public InstanceInfo Node(string name) => Instances.Single(i => i.Name == name);

    public Task<BootStatus?> StatusAsync(InstanceInfo node) => NodeProbe.BootStatusAsync(node.Address, CancellationToken.None);

    public NodeLog Log(InstanceInfo node) => NodeLog.Read(Files.ConsoleLogPath(node.Name));

    /// <summary>Polls the nodes' boot-status calls until every one reports <paramref name="phase"/> (and <paramref name="also"/>).</summary>
    public async Task WaitForPhaseAsync(IEnumerable<InstanceInfo> nodes, string phase, TimeSpan? timeout = null, Func<BootStatus, bool>? also = null)
    {
        var list = nodes.ToList();
        var (statuses, reached) = await Poll.UntilAsync(() => Task.WhenAll(list.Select(StatusAsync)),
            all => all.All(s => s is not null && s.Phase == phase && (also is null || also(s))), timeout ?? BootTimeout);
        if (!reached)
        {
            var report = new StringBuilder($"not every node reached phase {phase} within {(timeout ?? BootTimeout).TotalSeconds:0} s:\n");
            for (var i = 0; i < list.Count; i++)
            {
                report.Append($"  {list[i].Name}: {statuses[i]?.Phase ?? "(no status answer)"} lastError={statuses[i]?.LastError}\n");
                report.Append("    " + Log(list[i]).Tail(6).Replace("\n", "\n    ", StringComparison.Ordinal) + "\n");
            }
            Assert.Fail(report.ToString());
        }
    }

    /// <summary>
    /// Precondition of a step: every node booted. After one failure later steps fail at once instead of each
    /// waiting out the timeout on a broken cluster.
    /// </summary>
    public async Task EnsureAllBootedAsync()
    {
        Assert.True(_unhealthy is null, $"the shared cluster is unhealthy since an earlier step: {_unhealthy}");
        try
        {
            await WaitForPhaseAsync(Instances, BootPhases.Booted);
        }
        catch (Exception e)
        {
            _unhealthy = e.Message;
            throw;
        }
    }

    /// <summary>Waits until the node's console satisfies a condition.</summary>
    public async Task<NodeLog> WaitForLogAsync(InstanceInfo node, Func<NodeLog, bool> condition, string what, TimeSpan? timeout = null)
    {
        var (log, reached) = await Poll.UntilAsync(() => Task.FromResult(Log(node)), condition, timeout ?? BootTimeout);
        if (!reached)
        {
            Assert.Fail($"{node.Name}: {what} did not appear in its serial console; last lines:\n{log.Tail()}");
        }
        return log;
    }

    /// <summary>The workspace's API credential (the workload API and the provider's power API want it).</summary>
    public ApiCredential Credential => ApiCredential.Load(Files.CredentialPath);

    /// <summary>A workload API call with this Authorization header value ("" sends none).</summary>
    public static async Task<HttpResponseMessage> WorkloadAsync(InstanceInfo node, HttpMethod method, string path, string authorization, HttpContent? content = null)
    {
        using var request = new HttpRequestMessage(method, $"http://{node.Address}:{Ports.Workload}{path}") { Content = content };
        if (authorization.Length > 0)
        {
            request.Headers.TryAddWithoutValidation("Authorization", authorization);
        }
        return await Http.SendAsync(request);
    }

    public async Task PutAsync(InstanceInfo node, string key, string value)
    {
        using var response = await WorkloadAsync(node, HttpMethod.Put, $"/data/{key}", Credential.AuthorizationValue, new StringContent(value));
        Assert.True(response.IsSuccessStatusCode, $"PUT {key} on {node.Name}: HTTP {(int)response.StatusCode}");
    }

    public async Task<string?> GetAsync(InstanceInfo node, string key)
    {
        using var response = await WorkloadAsync(node, HttpMethod.Get, $"/data/{key}", Credential.AuthorizationValue);
        if (response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
        Assert.True(response.IsSuccessStatusCode, $"GET {key} on {node.Name}: HTTP {(int)response.StatusCode}");
        return await response.Content.ReadAsStringAsync();
    }

    /// <summary>Writes a fresh value under <paramref name="key"/> on every node and remembers it.</summary>
    public async Task WriteDataEverywhereAsync(string key)
    {
        foreach (var node in Instances)
        {
            var value = $"{key} on {node.Name} at {DateTimeOffset.UtcNow:O} {Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))}";
            await PutAsync(node, key, value);
            _data[node.Name + "/" + key] = value;
        }
    }

    /// <summary>Every value written so far reads back unchanged from its node.</summary>
    public async Task AssertDataIntactAsync()
    {
        Assert.NotEmpty(_data);
        foreach (var (where, value) in _data)
        {
            var slash = where.LastIndexOf('/');
            var node = Node(where[..slash]);
            Assert.Equal(value, await GetAsync(node, where[(slash + 1)..]));
        }
    }

    public MasterSecret LoadMasterSecret() => MasterSecret.Load(MasterSecretPath);

    /// <summary>A recoverproto client with the workspace's attestation policy (as `asterism recover` builds it).</summary>
    public RecoveryPusher Pusher(MasterSecret master, TimeSpan? timeout = null)
    {
        var policy = Asterism.Cli.Workspace.PolicyOf(new Asterism.Cli.Workspace(Workspace).LoadConfig()).ForKeyRelease();
        // The node record is authenticated with the workspace's real master secret, whatever secret this pusher sends.
        using var real = LoadMasterSecret();
        var record = NodeRecord.Load(Path.Combine(Workspace, NodeRecord.FileName), real);
        return new RecoveryPusher(master, policy.CreateValidator(NullLoggerFactory.Instance), record, NullLoggerFactory.Instance, timeout ?? TimeSpan.FromSeconds(30));
    }

    public string DiskUuid(InstanceInfo node) =>
        StateDisk.Probe(Files.DiskPath(node.Name)).Uuid ?? throw new InvalidOperationException($"{node.Name} has no LUKS2 disk");

    /// <summary>SHA-256 of the whole state-disk image (headers, keyslots and payload).</summary>
    public string DiskHash(InstanceInfo node)
    {
        using var stream = new FileStream(Files.DiskPath(node.Name), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>Whether something accepts TCP connections on the node's recovery port (9999).</summary>
    public static async Task<bool> RecoveryPortOpenAsync(InstanceInfo node)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await socket.ConnectAsync(IPAddress.Parse(node.Address), Ports.Recovery, timeout.Token);
            return true;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
        {
            return false;
        }
    }

    /// <summary>A worker never listens on 9999: a connect is refused.</summary>
    public async Task AssertWorkersRecoveryPortClosedAsync()
    {
        foreach (var worker in WorkerNodes)
        {
            Assert.False(await RecoveryPortOpenAsync(worker), $"worker {worker.Name} accepts connections on port {Ports.Recovery}");
        }
    }
}

/// <summary>3 control-plane + 2 worker nodes with the simulated attestation variant.</summary>
public sealed class SimulatedCluster : ClusterFixture
{
    public override string Variant => "simulated";
}
