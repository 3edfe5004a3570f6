using System.Net;
using Asterism.ControlPlane;
using Asterism.Node.State;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Etcd;

/// <summary>
/// A control plane's etcd member and its files on the state filesystem (issue #15 items 1–2): the cluster CA
/// (<c>etcd/ca</c>, made at init or received in the join ticket), the member's certificate (<c>etcd/tls</c>) and the
/// node's client certificate (<c>etcd/client</c>), both issued here from the CA, the data directory (<c>etcd/data</c>)
/// and, for a joined control plane, the membership it first started with (<c>etcd/initial-cluster</c>). The member
/// runs while the state filesystem is mounted and is stopped before it is unmounted; it dies with the node (setpriv
/// pdeathsig, see Asterism.ControlPlane).
/// </summary>
public sealed class NodeEtcd : IAsyncDisposable
{
    /// <summary>The cluster CA (ca.key, ca.crt); the cluster API loads it from exactly here.</summary>
    public const string CaFolder = "etcd/ca";

    /// <summary>The member certificate (client-facing and peer TLS).</summary>
    public const string TlsFolder = "etcd/tls";

    /// <summary>The node's own client certificate (JoinService, status).</summary>
    public const string ClientFolder = "etcd/client";

    /// <summary>etcd's data directory.</summary>
    public const string DataFolder = "etcd/data";

    /// <summary>A joined control plane's first membership, one "name=peerUrl" a line.</summary>
    public const string InitialClusterFile = "etcd/initial-cluster";

    private const int MaxInitialClusterMembers = 64;

    private readonly CancellationTokenSource _stop;
    private readonly Task<EtcdMember?> _member;
    private int _disposed;

    private NodeEtcd(EtcdConnection connection, CancellationTokenSource stop, Task<EtcdMember?> member, ClusterState state)
    {
        Connection = connection;
        _stop = stop;
        _member = member;
        State = state;
    }

    /// <summary>The node's client connection, its own member only: a member cut off from the majority answers NoQuorum.</summary>
    public EtcdConnection Connection { get; }

    /// <summary>Whether the member started a new cluster (init), joined as a learner, or restarted with its data.</summary>
    public ClusterState State { get; }

    /// <summary>Completes with the member once it is healthy (null when it failed to start or the node stopped first).</summary>
    public Task<EtcdMember?> Member => _member;

    /// <summary>Init: makes the cluster CA on the state filesystem (refuses to overwrite one).</summary>
    public static void CreateCa(NodeStateDirectory directory, string clusterName)
    {
        using var ca = ClusterCa.Create(directory.PathOf(CaFolder), clusterName);
    }

    /// <summary>A joining control plane: stores the CA and the membership from its ticket; the CA must load (key matches certificate).</summary>
    public static void StoreFromTicket(NodeStateDirectory directory, ReadOnlySpan<byte> caKeyPem, ReadOnlySpan<byte> caCertificatePem, IReadOnlyList<string> initialCluster)
    {
        ParseInitialCluster(initialCluster);
        var caDirectory = directory.PathOf(CaFolder);
        try
        {
            directory.Write(Path.Combine(CaFolder, ClusterCa.KeyFile), caKeyPem);
            directory.Write(Path.Combine(CaFolder, ClusterCa.CertificateFile), caCertificatePem);
            using (ClusterCa.Load(caDirectory))
            {
            }
            directory.Write(InitialClusterFile, System.Text.Encoding.UTF8.GetBytes(string.Join('\n', initialCluster) + "\n"));
        }
        catch
        {
            // A ticket whose CA does not load leaves nothing behind: no stray key, and no half CA that a later boot or
            // the cluster API would take for this control plane's own.
            foreach (var file in new[] { Path.Combine(CaFolder, ClusterCa.KeyFile), Path.Combine(CaFolder, ClusterCa.CertificateFile), InitialClusterFile })
            {
                File.Delete(directory.PathOf(file));
            }
            throw;
        }
    }

    /// <summary>Parses "name=https://127.x:2380" entries; refuses anything else (the list comes from a ticket).</summary>
    public static IReadOnlyList<(string Name, Uri PeerUrl)> ParseInitialCluster(IReadOnlyList<string> entries)
    {
        if (entries.Count is 0 or > MaxInitialClusterMembers)
        {
            throw new InvalidDataException($"the etcd membership must list 1 to {MaxInitialClusterMembers} members");
        }
        var result = new List<(string, Uri)>();
        foreach (var entry in entries)
        {
            var split = entry.Split('=', 2);
            if (split.Length != 2 || !NodeNames.IsValid(split[0]) || !Uri.TryCreate(split[1], UriKind.Absolute, out var url)
                || url.Scheme != "https" || !IPAddress.TryParse(url.Host, out var ip) || !IPAddress.IsLoopback(ip))
            {
                throw new InvalidDataException("the etcd membership has an entry that is not name=https://127.x.y.z:port");
            }
            result.Add((split[0], url));
        }
        return result;
    }

    /// <summary>
    /// Starts the member. <paramref name="waitHealthy"/>: init and join wait until it is healthy (a new cluster of one,
    /// or a learner that knows its leader); a reboot does not, because with the rest of the control plane down the
    /// member only becomes healthy when enough others come back, and the node must not hold its boot on that.
    /// </summary>
    public static async Task<NodeEtcd> StartAsync(NodeStateDirectory directory, string name, IPAddress address, bool waitHealthy, ILogger logger, CancellationToken cancellationToken)
    {
        // etcd trusts the etcd CA only (the cluster CA's twin under another name): the admin credential and the cluster
        // API's certificates, which the cluster CA signs, do not chain to it.
        using var clusterCa = ClusterCa.Load(directory.PathOf(CaFolder));
        using var ca = clusterCa.ForEtcd();
        var memberTls = IssuedBy(ca, directory.PathOf(TlsFolder), "member") ?? ca.IssueMember(directory.PathOf(TlsFolder), name, address);
        var clientTls = IssuedBy(ca, directory.PathOf(ClientFolder), "client") ?? ca.IssueClient(directory.PathOf(ClientFolder), name);
        var dataDirectory = directory.PathOf(DataFolder);
        var hasData = Directory.Exists(Path.Combine(dataDirectory, "member"));
        var initialCluster = directory.ReadOrNull(InitialClusterFile) is { } bytes
            ? ParseInitialCluster(System.Text.Encoding.UTF8.GetString(bytes).Split('\n', StringSplitOptions.RemoveEmptyEntries))
            : null;
        // No data yet and no membership from a ticket: this is init's one-member cluster. Anything else joins the
        // existing cluster (a data directory makes etcd ignore the membership list).
        var state = !hasData && initialCluster is null ? ClusterState.New : ClusterState.Existing;
        var options = new EtcdMemberOptions
        {
            Name = name,
            Address = address,
            DataDirectory = dataDirectory,
            Tls = memberTls,
            State = state,
            InitialCluster = initialCluster,
            IsLearner = !hasData && initialCluster is not null,
            // A rebooting member waits for its peers as long as the node runs; the node's stop cancels the start.
            StartTimeout = waitHealthy ? TimeSpan.FromSeconds(60) : TimeSpan.FromDays(365),
        };
        var connection = new EtcdConnection([options.ClientUrl], clientTls, TimeSpan.FromSeconds(3));
        var stop = new CancellationTokenSource();
        var start = StartMemberAsync(options, logger, stop.Token);
        var etcd = new NodeEtcd(connection, stop, start, state);
        if (waitHealthy)
        {
            if (await start.WaitAsync(cancellationToken) is null)
            {
                await etcd.DisposeAsync();
                throw new ControlPlaneException(ControlPlaneError.StartFailed, $"the etcd member of {name} did not start (see the log above)");
            }
        }
        return etcd;
    }

    /// <summary>
    /// The certificate files already in <paramref name="folder"/> when their CA copy is <paramref name="ca"/>'s; null
    /// otherwise (none yet, or issued under the cluster CA by an earlier version: they are issued afresh).
    /// </summary>
    private static TlsFiles? IssuedBy(ClusterCa ca, string folder, string fileBase)
    {
        var files = new TlsFiles(Path.Combine(folder, fileBase + ".crt"), Path.Combine(folder, fileBase + ".key"), Path.Combine(folder, ClusterCa.CertificateFile));
        if (!File.Exists(files.CertificatePath) || !File.Exists(files.KeyPath) || !File.Exists(files.CaPath))
        {
            return null;
        }
        using var copy = files.LoadCa();
        return copy.SubjectName.RawData.AsSpan().SequenceEqual(ca.Certificate.SubjectName.RawData) ? files : null;
    }

    private static async Task<EtcdMember?> StartMemberAsync(EtcdMemberOptions options, ILogger logger, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await EtcdMember.StartAsync(options, logger, cancellationToken: cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return null;
            }
            catch (ControlPlaneException e)
            {
                if (attempt < MaxWalCreateAttempts && e.Error == ControlPlaneError.StartFailed && await ClearHalfCreatedWalAsync(options.DataDirectory, cancellationToken))
                {
                    NodeLog.Etcd.StartRetried(logger, options.Name, "its first WAL was never created; the temporary WAL directory was cleared");
                    continue;
                }
                NodeLog.Etcd.StartFailed(logger, options.Name, e.Message);
                return null;
            }
        }
    }

    private const int MaxWalCreateAttempts = 3;

    /// <summary>
    /// Removes member/wal.tmp when member/wal does not exist yet: a first start that died creating its WAL. On fuse2fs
    /// (a node without root) etcd's own writability probe in wal.tmp (write ".touch", close, unlink) races the kernel's
    /// asynchronous release of the file, so libfuse hides it as ".fuse_hidden…" instead of deleting it, and etcd then
    /// panics because wal.tmp is not empty (seen once in about ten non-root CI runs). Nothing was ever committed to a
    /// WAL that does not exist, so clearing the temporary directory and starting again loses nothing. Returns whether
    /// there was such a directory and it is gone.
    /// </summary>
    private static async Task<bool> ClearHalfCreatedWalAsync(string dataDirectory, CancellationToken cancellationToken)
    {
        var member = Path.Combine(dataDirectory, "member");
        var temporary = Path.Combine(member, "wal.tmp");
        if (Directory.Exists(Path.Combine(member, "wal")) || !Directory.Exists(temporary))
        {
            return false;
        }
        // The exited etcd's last releases may still be on their way to the FUSE server: give them a moment.
        for (var tries = 1; ; tries++)
        {
            try
            {
                Directory.Delete(temporary, recursive: true);
                return true;
            }
            catch (IOException) when (tries < 20)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(50), cancellationToken);
            }
            catch (IOException)
            {
                return false;
            }
        }
    }

    /// <summary>The quorum as this member sees it, or null when the member does not answer at all.</summary>
    public async Task<QuorumStatus?> QuorumAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await new EtcdMembership(Connection).QuorumStatusAsync(TimeSpan.FromMilliseconds(500), cancellationToken);
        }
        catch (Exception e) when (e is ControlPlaneException or Grpc.Core.RpcException or OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>Stops the member (SIGTERM, SIGKILL after 10 s) or its start; must run before the state filesystem is unmounted.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _stop.CancelAsync();
        if (await _member is { } member)
        {
            await member.StopAsync();
        }
        Connection.Dispose();
        _stop.Dispose();
    }
}
