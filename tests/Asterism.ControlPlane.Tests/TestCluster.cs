using System.Net;
using System.Security.Cryptography;
using Asterism.Tests;

namespace Asterism.ControlPlane.Tests;

/// <summary>
/// Real etcd members for one test: a private temp directory (CA, certificates, data dirs), members on
/// 127.77.R.N with R the next subnet after a random start, so clusters of one run never share an address and
/// concurrent runs and leftovers of a killed run rarely do. Dispose kills every member by PID and deletes the directory.
/// </summary>
internal sealed class TestCluster : IAsyncDisposable
{
    private readonly List<EtcdMember?> _members = [];
    // A random start (another run, or leftovers of a killed one, sit elsewhere), then the next subnet for each cluster:
    // test classes run in parallel, and two live clusters drawing the same random subnet collided on 2379 in CI.
    private static int _nextSubnet = RandomNumberGenerator.GetInt32(0, 254);
    private readonly byte _subnet = (byte)(Interlocked.Increment(ref _nextSubnet) % 254 + 1);

    private TestCluster(string root)
    {
        Root = root;
        Ca = ClusterCa.Create(Path.Combine(root, "ca"), "test");
        EtcdCa = Ca.ForEtcd();
        ClientTls = EtcdCa.IssueClient(Path.Combine(root, "client"), "admin");
    }

    public string Root { get; }

    /// <summary>The cluster CA (cluster API, admin credential); etcd does not trust it.</summary>
    public ClusterCa Ca { get; }

    /// <summary>The CA etcd trusts (the cluster CA's twin), as the node uses it.</summary>
    public ClusterCa EtcdCa { get; }

    public TlsFiles ClientTls { get; }

    public IReadOnlyList<EtcdMember?> Members => _members;

    public IEnumerable<Uri> ClientUrls => Enumerable.Range(0, _members.Count).Select(i => Options(i).ClientUrl);

    public static TestCluster Create() =>
        new(Directory.CreateTempSubdirectory("asterism-etcd-").FullName);

    public IPAddress Address(int index) => new([127, 77, _subnet, (byte)(index + 1)]);

    public EtcdMemberOptions Options(int index, ClusterState state = ClusterState.New, IReadOnlyList<(string, Uri)>? initialCluster = null, bool learner = false)
    {
        var name = $"cp{index}";
        var dir = Path.Combine(Root, name);
        return new EtcdMemberOptions
        {
            Name = name,
            Address = Address(index),
            DataDirectory = Path.Combine(dir, "data"),
            Tls = File.Exists(Path.Combine(dir, "tls", "member.crt"))
                ? new TlsFiles(Path.Combine(dir, "tls", "member.crt"), Path.Combine(dir, "tls", "member.key"), Path.Combine(dir, "tls", "ca.crt"))
                : EtcdCa.IssueMember(Path.Combine(dir, "tls"), name, Address(index)),
            State = state,
            InitialCluster = initialCluster,
            IsLearner = learner,
            ClusterToken = $"test-{_subnet}",
        };
    }

    public async Task<EtcdMember> StartFirstAsync()
    {
        var member = await EtcdMember.StartAsync(Options(0));
        _members.Add(member);
        return member;
    }

    public EtcdConnection Connect(TimeSpan? callTimeout = null) => new(ClientUrls, ClientTls, callTimeout);

    /// <summary>Adds member N as a learner, starts it, promotes it: what the JoinService will do for a joining control plane.</summary>
    public async Task<EtcdMember> AddMemberAsync(int index)
    {
        using var connection = Connect();
        var membership = new EtcdMembership(connection);
        var options = Options(index);
        var added = await membership.AddAsync(options.Name, options.PeerUrl, asLearner: true);
        var member = await EtcdMember.StartAsync(Options(index, ClusterState.Existing, added.InitialCluster, learner: true));
        await membership.PromoteAsync(added.Id, Poll.Hang);
        _members.Add(member);
        return member;
    }

    /// <summary>Restarts member N from its data dir (state Existing), as a rebooted control plane does.</summary>
    public async Task<EtcdMember> RestartAsync(int index)
    {
        var old = _members[index];
        if (old is not null)
        {
            await old.KillAsync();
        }
        var member = await EtcdMember.StartAsync(Options(index, ClusterState.Existing));
        _members[index] = member;
        return member;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var m in _members)
        {
            if (m is not null)
            {
                await m.KillAsync();
            }
        }
        EtcdCa.Dispose();
        Ca.Dispose();
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Runs etcdctl with the admin client certificate against every member (tests/Shared/Etcdctl.cs).</summary>
    public Task<(int ExitCode, string Output)> EtcdctlAsync(params string[] args) =>
        Etcdctl.RunAsync(ClientUrls.Select(u => u.ToString()), ClientTls.CaPath, ClientTls.CertificatePath, ClientTls.KeyPath, args);
}
