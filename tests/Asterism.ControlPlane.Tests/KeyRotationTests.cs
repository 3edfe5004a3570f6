namespace Asterism.ControlPlane.Tests;

public sealed class KeyRotationTests
{
    private static NodeRecord Node(string name, NodeRole role = NodeRole.Worker) =>
        new(name, role, Guid.NewGuid(), [0x30, 0x03, 0x02, 0x01, 0x07], new DateTimeOffset(2026, 11, 29, 8, 0, 0, TimeSpan.Zero));

    [Fact]
    public async Task Rotation_BeginConfirmComplete_GenerationsRecordedAndOldGenerationVoidInAudit()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        var registry = new NodeRegistry(connection);
        await registry.RegisterAsync(Node("control-plane-0", NodeRole.ControlPlane));
        await registry.RegisterAsync(Node("worker-0"));
        await registry.RegisterAsync(Node("worker-1"));
        await registry.RevokeAsync("worker-1", DateTimeOffset.UnixEpoch);
        var rotation = new KeyRotation(connection);

        Assert.Equal(1, await rotation.CurrentGenerationAsync());
        Assert.Null(await rotation.PendingAsync());
        var begun = await rotation.BeginAsync([1, 2, 3], "admin", "control-plane-0");
        Assert.Equal((1, 2), (begun.From, begun.To));
        Assert.DoesNotContain("1, 2, 3", begun.ToString(), StringComparison.Ordinal);
        var again = await Assert.ThrowsAsync<ControlPlaneException>(() => rotation.BeginAsync([4], "admin", "control-plane-0"));
        Assert.Equal(ControlPlaneError.Conflict, again.Error);
        Assert.Equal([1, 2, 3], (await rotation.PendingAsync())!.WrappedSecret);

        // The revoked node does not hold the rotation up; the powered-off worker does.
        await rotation.ConfirmAsync("control-plane-0", 2);
        Assert.Equal(["worker-0"], (await rotation.BehindAsync(2)).Select(n => n.Name));
        var early = await Assert.ThrowsAsync<ControlPlaneException>(() => rotation.CompleteAsync("admin", "control-plane-0"));
        Assert.Equal(ControlPlaneError.Conflict, early.Error);
        Assert.Contains("worker-0", early.Message, StringComparison.Ordinal);
        Assert.Equal(1, await rotation.CurrentGenerationAsync());
        var wrongGeneration = await Assert.ThrowsAsync<ControlPlaneException>(() => rotation.ConfirmAsync("worker-0", 3));
        Assert.Equal(ControlPlaneError.InvalidRequest, wrongGeneration.Error);

        await rotation.ConfirmAsync("worker-0", 2);
        await rotation.ConfirmAsync("worker-0", 2); // a rerun after a crash: no second entry
        Assert.Equal(1, await rotation.CompleteAsync("admin", "control-plane-0"));
        Assert.Equal(2, await rotation.CurrentGenerationAsync());
        Assert.Null(await rotation.PendingAsync());
        Assert.Equal(2, (await registry.GetAsync("worker-0"))!.KeyGeneration);
        Assert.Equal(1, (await registry.GetAsync("worker-1"))!.KeyGeneration);

        var entries = new List<AuditEntry>();
        await foreach (var e in new AuditLog(connection).ReadAsync())
        {
            entries.Add(e);
        }
        var rotationEntries = entries.Where(e => e.Kind == AuditKind.KeyRotation).Select(e => (e.Node, e.Detail)).ToList();
        Assert.Equal(4, rotationEntries.Count);
        Assert.StartsWith("rotation to generation 2 begun", rotationEntries[0].Detail, StringComparison.Ordinal);
        Assert.Equal("worker-0", rotationEntries[2].Node);
        Assert.StartsWith("generation 1 void", rotationEntries[3].Detail, StringComparison.Ordinal);

        // The next rotation starts from generation 2.
        Assert.Equal(3, (await rotation.BeginAsync([5], "admin", "control-plane-0")).To);
    }

    [Fact]
    public async Task CompleteAsync_NodeRegisteredAtOldGenerationBeforeCommit_RefusedGenerationUnchanged()
    {
        // A join that read the cluster's generation (the rotation's From) registers its node at From after the completion
        // listed the laggards and before it committed: completing then would make the only key of that disk void.
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        var registry = new NodeRegistry(connection);
        await registry.RegisterAsync(Node("control-plane-0", NodeRole.ControlPlane));
        var rotation = new KeyRotation(connection);
        await rotation.BeginAsync([1, 2, 3], "admin", "control-plane-0");
        await rotation.ConfirmAsync("control-plane-0", 2);
        rotation.BeforeCompleteCommit = ct => registry.RegisterAsync(Node("worker-late"), ct);

        var error = await Assert.ThrowsAsync<ControlPlaneException>(() => rotation.CompleteAsync("admin", "control-plane-0"));

        Assert.Equal(ControlPlaneError.Conflict, error.Error);
        Assert.Equal(1, await rotation.CurrentGenerationAsync());
        Assert.NotNull(await rotation.PendingAsync());
        rotation.BeforeCompleteCommit = null;
        var behind = await Assert.ThrowsAsync<ControlPlaneException>(() => rotation.CompleteAsync("admin", "control-plane-0"));
        Assert.Contains("worker-late", behind.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BeginAsync_SealedUnderAGenerationThatCompletedMeanwhile_ConflictNothingStored()
    {
        // Two admins: one completes 1 -> 2 while the other's begin sealed its secret under generation 1. A record
        // From = 2 sealed under 1 would open on no control plane and could never be completed.
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        await new NodeRegistry(connection).RegisterAsync(Node("control-plane-0", NodeRole.ControlPlane));
        var rotation = new KeyRotation(connection);
        await rotation.BeginAsync([1], "admin", "control-plane-0", sealedUnder: 1);
        await rotation.ConfirmAsync("control-plane-0", 2);
        await rotation.CompleteAsync("admin", "control-plane-0");

        var error = await Assert.ThrowsAsync<ControlPlaneException>(() => rotation.BeginAsync([2], "admin-2", "control-plane-0", sealedUnder: 1));

        Assert.Equal(ControlPlaneError.Conflict, error.Error);
        Assert.Null(await rotation.PendingAsync());
    }

    [Fact]
    public async Task Rotation_CorruptRecordOrNoRotation_ClearErrors()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        var rotation = new KeyRotation(connection);
        Assert.Equal(ControlPlaneError.InvalidRequest, (await Assert.ThrowsAsync<ControlPlaneException>(() => rotation.CompleteAsync("admin", "control-plane-0"))).Error);
        Assert.Equal(ControlPlaneError.InvalidRequest, (await Assert.ThrowsAsync<ControlPlaneException>(() => rotation.ConfirmAsync("worker-0", 2))).Error);
        Assert.Equal(ControlPlaneError.InvalidRequest, (await Assert.ThrowsAsync<ControlPlaneException>(() => rotation.BeginAsync([], "admin", "control-plane-0"))).Error);
        var (code, _) = await cluster.EtcdctlAsync("put", KeyRotation.RotationKey, "{\"from\":1,\"to\":5}");
        Assert.Equal(0, code);
        Assert.Equal(ControlPlaneError.Corrupt, (await Assert.ThrowsAsync<ControlPlaneException>(() => rotation.PendingAsync())).Error);

        // A generation near int.MaxValue would wrap the target to a negative number: refused as corrupt, not parsed.
        var wrapped = "{\"from\":2147483647,\"to\":-2147483648,\"wrappedSecret\":\"AAAA\",\"startedAt\":\"2026-01-01T00:00:00Z\",\"startedBy\":\"x\"}";
        Assert.Equal(0, (await cluster.EtcdctlAsync("put", KeyRotation.RotationKey, wrapped)).Item1);
        Assert.Equal(ControlPlaneError.Corrupt, (await Assert.ThrowsAsync<ControlPlaneException>(() => rotation.PendingAsync())).Error);
        Assert.Equal(0, (await cluster.EtcdctlAsync("put", KeyRotation.GenerationKey, "2147483647")).Item1);
        Assert.Equal(ControlPlaneError.Corrupt, (await Assert.ThrowsAsync<ControlPlaneException>(() => rotation.CurrentGenerationAsync())).Error);
    }
}
