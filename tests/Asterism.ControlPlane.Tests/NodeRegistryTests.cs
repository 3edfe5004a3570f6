namespace Asterism.ControlPlane.Tests;

public sealed class NodeRegistryTests
{
    private static NodeRecord Node(string name, NodeRole role = NodeRole.Worker) =>
        new(name, role, Guid.NewGuid(), [0x30, 0x03, 0x02, 0x01, 0x07], new DateTimeOffset(2026, 11, 29, 8, 0, 0, TimeSpan.Zero));

    [Fact]
    public async Task RegisterGetUpdateRevokeRemove_OneMember_RoundTrips()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        var registry = new NodeRegistry(connection);
        var cp = Node("control-plane-0", NodeRole.ControlPlane);
        var worker = Node("worker-0");
        await registry.RegisterAsync(cp);
        await registry.RegisterAsync(worker);

        var read = await registry.GetAsync("control-plane-0");
        Assert.NotNull(read);
        Assert.Equal(cp.DiskUuid, read.DiskUuid);
        Assert.Equal(NodeRole.ControlPlane, read.Role);
        Assert.Equal(cp.Identity, read.Identity);
        Assert.Equal(cp.JoinedAt, read.JoinedAt);
        Assert.StartsWith("-----BEGIN CERTIFICATE-----", read.IdentityPem, StringComparison.Ordinal);
        Assert.False(read.Revoked);
        Assert.Equal(["control-plane-0", "worker-0"], (await registry.ListAsync()).Select(r => r.Name));

        var bumped = await registry.UpdateAsync("worker-0", r => r with { KeyGeneration = r.KeyGeneration + 1 });
        Assert.Equal(2, bumped.KeyGeneration);
        var revokedAt = new DateTimeOffset(2026, 11, 29, 9, 0, 0, TimeSpan.Zero);
        await registry.RevokeAsync("worker-0", revokedAt);
        var revoked = await registry.GetAsync("worker-0");
        Assert.True(revoked!.Revoked);
        Assert.Equal(revokedAt, revoked.RevokedAt);
        Assert.Equal(2, revoked.KeyGeneration);

        await registry.RemoveAsync("worker-0");
        Assert.Null(await registry.GetAsync("worker-0"));
    }

    [Fact]
    public async Task RemoveIfUnchangedAsync_RevokedSinceRead_ConflictRecordKept()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        var registry = new NodeRegistry(connection);
        await registry.RegisterAsync(Node("worker-0"));
        var read = await registry.GetVersionedAsync("worker-0");
        await registry.RevokeAsync("worker-0", DateTimeOffset.UnixEpoch);

        var e = await Assert.ThrowsAsync<ControlPlaneException>(() => registry.RemoveIfUnchangedAsync(read!));

        Assert.Equal(ControlPlaneError.Conflict, e.Error);
        Assert.True((await registry.GetAsync("worker-0"))!.Revoked);
        // The control: with the current revision the delete goes through.
        await registry.RemoveIfUnchangedAsync((await registry.GetVersionedAsync("worker-0"))!);
        Assert.Null(await registry.GetAsync("worker-0"));
    }

    [Fact]
    public async Task BadRequests_UnknownDuplicateOrInvalidName_ClearErrorsNothingChanged()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        var registry = new NodeRegistry(connection);
        await registry.RegisterAsync(Node("worker-0"));

        var duplicate = await Assert.ThrowsAsync<ControlPlaneException>(() => registry.RegisterAsync(Node("worker-0")));
        Assert.Equal(ControlPlaneError.InvalidRequest, duplicate.Error);
        var unknown = await Assert.ThrowsAsync<ControlPlaneException>(() => registry.RevokeAsync("ghost", DateTimeOffset.UnixEpoch));
        Assert.Equal(ControlPlaneError.NotFound, unknown.Error);
        Assert.Equal("node ghost is not registered", unknown.Message);
        var removeUnknown = await Assert.ThrowsAsync<ControlPlaneException>(() => registry.RemoveAsync("ghost"));
        Assert.Equal(ControlPlaneError.NotFound, removeUnknown.Error);
        var invalid = await Assert.ThrowsAsync<ControlPlaneException>(() => registry.GetAsync("../audit/head"));
        Assert.Equal(ControlPlaneError.InvalidRequest, invalid.Error);
        Assert.Single(await registry.ListAsync());
    }

    [Fact]
    public async Task GetAsync_EntryCorruptedWithEtcdctl_CorruptError()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        var registry = new NodeRegistry(connection);
        await registry.RegisterAsync(Node("worker-0"));
        var (code, output) = await cluster.EtcdctlAsync("put", "/asterism/nodes/worker-0", "{\"name\":\"worker-1\"");
        Assert.True(code == 0, output);
        var e = await Assert.ThrowsAsync<ControlPlaneException>(() => registry.GetAsync("worker-0"));
        Assert.Equal(ControlPlaneError.Corrupt, e.Error);
    }

    [Fact]
    public async Task UpdateAsync_ConcurrentWriters_NoUpdateLost()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        var registry = new NodeRegistry(connection);
        await registry.RegisterAsync(Node("worker-0"));
        // Eight writers bump the generation at once; compare-and-swap makes every bump count.
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => registry.UpdateAsync("worker-0", r => r with { KeyGeneration = r.KeyGeneration + 1 })));
        Assert.Equal(9, (await registry.GetAsync("worker-0"))!.KeyGeneration);
    }
}
