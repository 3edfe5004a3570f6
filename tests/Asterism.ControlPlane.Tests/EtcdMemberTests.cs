using System.Diagnostics;
using Etcdserverpb;

namespace Asterism.ControlPlane.Tests;

public sealed class EtcdMemberTests
{
    [Fact]
    public async Task StartAsync_OneMember_HealthyAndServesLinearizableReads()
    {
        await using var cluster = TestCluster.Create();
        var member = await cluster.StartFirstAsync();
        Assert.True(member.ProcessId > 0);
        using var connection = cluster.Connect();
        var membership = new EtcdMembership(connection);
        var members = await membership.ListAsync();
        var only = Assert.Single(members);
        Assert.Equal("cp0", only.Name);
        Assert.False(only.IsLearner);
        var status = await membership.QuorumStatusAsync(TimeSpan.FromSeconds(2));
        Assert.True(status.HasQuorum);
        Assert.Equal("etcd: 1 of 1 members up, quorum needs 1", status.Message);
        // etcd's data dir and the TLS directory stay private.
        Assert.Equal(SecureFiles.DirectoryMode, File.GetUnixFileMode(member.Options.DataDirectory));
    }

    [Fact]
    public async Task StopAsync_RunningMember_ProcessGoneByPid()
    {
        await using var cluster = TestCluster.Create();
        var member = await cluster.StartFirstAsync();
        var pid = member.ProcessId;
        await member.StopAsync();
        Assert.True(member.HasExited);
        Assert.False(Directory.Exists($"/proc/{pid}") && File.ReadAllText($"/proc/{pid}/cmdline").Contains("etcd", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task StartAsync_SquatterOnAPort_StartFailedNamingThePort(bool peerPort)
    {
        await using var cluster = TestCluster.Create();
        var options = cluster.Options(0);
        // Another local process bound the member's port first (it may bind any free 127/8 port).
        var port = peerPort ? options.PeerPort : options.ClientPort;
        var squatter = new System.Net.Sockets.TcpListener(options.Address, port);
        squatter.Start();
        try
        {
            var e = await Assert.ThrowsAsync<ControlPlaneException>(() => EtcdMember.StartAsync(options));

            Assert.Equal(ControlPlaneError.StartFailed, e.Error);
            Assert.Contains($"{options.Address}:{port} is already taken by another process", e.Message, StringComparison.Ordinal);
            Assert.Empty(cluster.Members);
        }
        finally
        {
            squatter.Dispose();
        }
    }

    [Fact]
    public async Task StartAsync_EtcdMissing_ClearError()
    {
        await using var cluster = TestCluster.Create();
        var options = cluster.Options(0);
        var missing = new EtcdMemberOptions
        {
            Name = options.Name,
            Address = options.Address,
            DataDirectory = options.DataDirectory,
            Tls = options.Tls,
            EtcdPath = Path.Combine(cluster.Root, "no-such-etcd"),
        };
        var e = await Assert.ThrowsAsync<ControlPlaneException>(() => EtcdMember.StartAsync(missing));
        Assert.Equal(ControlPlaneError.NotInstalled, e.Error);
        Assert.Equal("etcd is not installed (apt-get install etcd-server)", e.Message);
    }

    [Fact]
    public async Task StartAsync_InjectedPorts_ListensThere()
    {
        await using var cluster = TestCluster.Create();
        var options = cluster.Options(0);
        var custom = new EtcdMemberOptions
        {
            Name = options.Name,
            Address = options.Address,
            ClientPort = 23791,
            PeerPort = 23801,
            DataDirectory = options.DataDirectory,
            Tls = options.Tls,
        };
        await using var member = await EtcdMember.StartAsync(custom);
        using var connection = new EtcdConnection([custom.ClientUrl], cluster.ClientTls);
        var status = await connection.CallAsync((c, d, ct) => c.StatusAsync(new StatusRequest(), deadline: d, cancellationToken: ct), CancellationToken.None);
        Assert.NotEqual(0UL, status.Leader);
        Assert.Equal(23791, custom.ClientUrl.Port);
    }
}
