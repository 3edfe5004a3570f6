using System.Diagnostics;
using Asterism.Tests;

namespace Asterism.ControlPlane.Tests;

public sealed class QuorumTests
{
    private static NodeRecord Node(string name) =>
        new(name, NodeRole.Worker, Guid.NewGuid(), [0x30, 0x03, 0x02, 0x01, 0x01], DateTimeOffset.UnixEpoch);

    [Fact]
    public async Task AddAsync_SecondAndThirdAsLearners_PromotedToVotingMembers()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        await cluster.AddMemberAsync(1);
        await cluster.AddMemberAsync(2);

        using var connection = cluster.Connect();
        var membership = new EtcdMembership(connection);
        var members = await membership.ListAsync();
        Assert.Equal(["cp0", "cp1", "cp2"], members.Select(m => m.Name).Order());
        Assert.All(members, m => Assert.False(m.IsLearner));
        var status = await membership.QuorumStatusAsync(TimeSpan.FromSeconds(2));
        Assert.Equal("etcd: 3 of 3 members up, quorum needs 2", status.Message);
        Assert.True(status.HasQuorum);

        // Data written through one member is read through each of the others.
        var registry = new NodeRegistry(connection);
        await registry.RegisterAsync(Node("worker-a"));
        foreach (var url in cluster.ClientUrls)
        {
            using var one = new EtcdConnection([url], cluster.ClientTls);
            Assert.NotNull(await new NodeRegistry(one).GetAsync("worker-a"));
        }

        // A dead control plane is removed (`asterism node remove`): two voting members remain, both needed.
        await cluster.Members[2]!.KillAsync();
        await membership.RemoveAsync("cp2");
        Assert.Equal(["cp0", "cp1"], (await membership.ListAsync()).Select(m => m.Name).Order());
        using var remaining = new EtcdConnection(cluster.ClientUrls.Take(2), cluster.ClientTls);
        Assert.Equal("etcd: 2 of 2 members up, quorum needs 2", (await new EtcdMembership(remaining).QuorumStatusAsync(TimeSpan.FromSeconds(2))).Message);
        var unknown = await Assert.ThrowsAsync<ControlPlaneException>(() => membership.RemoveAsync("cp9"));
        Assert.Equal(ControlPlaneError.NotFound, unknown.Error);
    }

    [Fact]
    public async Task RemoveAsync_LastMember_Refused()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        var e = await Assert.ThrowsAsync<ControlPlaneException>(() => new EtcdMembership(connection).RemoveAsync("cp0"));
        Assert.Equal(ControlPlaneError.InvalidRequest, e.Error);
        Assert.Single(await new EtcdMembership(connection).ListAsync());
    }

    [Fact]
    public async Task RegistryGet_TwoOfThreeKilled_NoQuorumUntilTheyRestart()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        await cluster.AddMemberAsync(1);
        await cluster.AddMemberAsync(2);
        using (var setup = cluster.Connect())
        {
            await new NodeRegistry(setup).RegisterAsync(Node("worker-a"));
        }

        await cluster.Members[1]!.KillAsync();
        await cluster.Members[2]!.KillAsync();

        // The survivor alone: a linearizable read cannot be served; it fails with the typed error within the call deadline.
        using var survivor = new EtcdConnection([cluster.Members[0]!.ClientUrl], cluster.ClientTls, TimeSpan.FromSeconds(2));
        var registry = new NodeRegistry(survivor);
        var watch = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<ControlPlaneException>(() => registry.GetAsync("worker-a"));
        Assert.Equal(ControlPlaneError.NoQuorum, e.Error);
        Assert.Equal("control plane has no quorum", e.Message);
        Assert.True(watch.Elapsed < Poll.Hang, $"no-quorum took {watch.Elapsed}");
        // Writes too: no audit entry without quorum, hence no key.
        var append = await Assert.ThrowsAsync<ControlPlaneException>(() => new AuditLog(survivor).AppendAsync(AuditKind.Release, "worker-a", "rejoin"));
        Assert.Equal(ControlPlaneError.NoQuorum, append.Error);

        using var all = cluster.Connect(TimeSpan.FromSeconds(2));
        var status = await new EtcdMembership(all).QuorumStatusAsync(TimeSpan.FromSeconds(1));
        Assert.Equal("etcd: 1 of 3 members up, quorum needs 2", status.Message);
        Assert.False(status.HasQuorum);

        // Restarting one of the two from its data directory restores the majority; the record written before reads back.
        await cluster.RestartAsync(1);
        Assert.True(await Poll.UntilAsync(async () =>
        {
            try
            {
                return (await registry.GetAsync("worker-a")) is not null;
            }
            catch (ControlPlaneException x) when (x.Error == ControlPlaneError.NoQuorum)
            {
                return false;
            }
        }, Poll.Hang), "registry never became readable after the restart");
        await cluster.RestartAsync(2);
        status = await new EtcdMembership(all).QuorumStatusAsync(TimeSpan.FromSeconds(2));
        Assert.Equal("etcd: 3 of 3 members up, quorum needs 2", status.Message);
    }
}
