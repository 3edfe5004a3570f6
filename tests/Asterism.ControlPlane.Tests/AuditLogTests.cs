using System.Text.Json;
using System.Text.Json.Nodes;

namespace Asterism.ControlPlane.Tests;

public sealed class AuditLogTests
{
    private static async Task<AuditLog> FilledAsync(TestCluster cluster, EtcdConnection connection, int count)
    {
        var log = new AuditLog(connection);
        var kinds = Enum.GetValues<AuditKind>();
        for (var i = 0; i < count; i++)
        {
            await log.AppendAsync(kinds[i % kinds.Length], $"node-{i}", $"entry {i}");
        }
        return log;
    }

    private static async Task<JsonObject> EntryAsync(TestCluster cluster, long sequence)
    {
        var (code, output) = await cluster.EtcdctlAsync("get", "--print-value-only", $"/asterism/audit/entries/{sequence:D20}");
        Assert.True(code == 0, output);
        return JsonNode.Parse(output.Trim())!.AsObject();
    }

    [Fact]
    public async Task AppendAsync_FiveEntries_LinkedAndVerified()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        var log = await FilledAsync(cluster, connection, 5);
        var entries = await log.ReadAsync().ToListAsync();
        Assert.Equal([1L, 2, 3, 4, 5], entries.Select(e => e.Sequence));
        Assert.Equal(AuditEntry.Genesis, entries[0].Previous);
        for (var i = 1; i < entries.Count; i++)
        {
            Assert.Equal(entries[i - 1].Hash, entries[i].Previous);
        }
        Assert.Equal([AuditKind.Release, AuditKind.RefusedRelease, AuditKind.Recovery, AuditKind.Revocation, AuditKind.MembershipChange], entries.Select(e => e.Kind));
        var verification = await log.VerifyAsync();
        Assert.True(verification.Intact, verification.Message);
        Assert.Equal("audit chain intact (5 entries)", verification.Message);
    }

    [Fact]
    public async Task AppendIfUnchangedAsync_RecordChangedSinceRead_NothingAppended()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        var registry = new NodeRegistry(connection);
        var log = new AuditLog(connection);
        await registry.RegisterAsync(new NodeRecord("worker-0", NodeRole.Worker, Guid.NewGuid(), [1], DateTimeOffset.UnixEpoch));
        var read = (await registry.GetVersionedAsync("worker-0"))!;
        await log.AppendAsync(AuditKind.Recovery, "worker-1", "moves the head: the append must still tell the two apart");
        Assert.NotNull(await log.AppendIfUnchangedAsync(AuditKind.Release, read, "released"));

        await registry.RevokeAsync("worker-0", DateTimeOffset.UnixEpoch);

        Assert.Null(await log.AppendIfUnchangedAsync(AuditKind.Release, read, "must not be written"));
        Assert.Equal(2, (await log.ReadAsync().ToListAsync()).Count);
        Assert.True((await log.VerifyAsync()).Intact);
    }

    [Fact]
    public async Task VerifyAsync_EntryEditedWithEtcdctl_NamesThatEntry()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        var log = await FilledAsync(cluster, connection, 5);
        var entry = await EntryAsync(cluster, 3);
        entry["node"] = "someone-else";
        var (code, output) = await cluster.EtcdctlAsync("put", "/asterism/audit/entries/00000000000000000003", entry.ToJsonString());
        Assert.True(code == 0, output);

        var verification = await log.VerifyAsync();
        Assert.False(verification.Intact);
        Assert.Equal(3, verification.BrokenAt);
        Assert.Equal("audit chain broken at entry 3: its content does not match its hash (edited)", verification.Message);
    }

    [Fact]
    public async Task VerifyAsync_EditedEntryRehashed_NamesTheNextLink()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        var log = await FilledAsync(cluster, connection, 5);
        // A smarter tamperer recomputes entry 2's own hash: the link from entry 3 still gives it away.
        var original = JsonSerializer.Deserialize<AuditEntry>((await EntryAsync(cluster, 2)).ToJsonString(), new JsonSerializerOptions(JsonSerializerDefaults.Web))!;
        var forged = original with { Detail = "nothing happened" };
        forged = forged with { Hash = AuditEntry.ComputeHash(forged.Sequence, forged.Time, forged.Kind, forged.Node, forged.Detail, forged.Previous) };
        var (code, output) = await cluster.EtcdctlAsync("put", "/asterism/audit/entries/00000000000000000002",
            JsonSerializer.Serialize(forged, new JsonSerializerOptions(JsonSerializerDefaults.Web)));
        Assert.True(code == 0, output);

        var verification = await log.VerifyAsync();
        Assert.Equal(3, verification.BrokenAt);
        Assert.Equal("audit chain broken at entry 3: its previous-hash does not match entry 2", verification.Message);
    }

    [Fact]
    public async Task VerifyAsync_EntryDeletedOrTailCut_NamesTheGap()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        var log = await FilledAsync(cluster, connection, 4);
        var (code, output) = await cluster.EtcdctlAsync("del", "/asterism/audit/entries/00000000000000000004");
        Assert.True(code == 0, output);
        var cut = await log.VerifyAsync();
        Assert.Equal(4, cut.BrokenAt);
        Assert.Equal("audit chain broken at entry 4: missing (the head names entry 4)", cut.Message);

        (code, output) = await cluster.EtcdctlAsync("del", "/asterism/audit/entries/00000000000000000002");
        Assert.True(code == 0, output);
        var gap = await log.VerifyAsync();
        Assert.Equal(2, gap.BrokenAt);
        Assert.Equal("audit chain broken at entry 2: missing (the next stored entry is 3)", gap.Message);
    }

    [Fact]
    public async Task AppendAsync_ConcurrentWriters_ChainStaysLinear()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var first = cluster.Connect();
        using var second = cluster.Connect();
        var a = new AuditLog(first);
        var b = new AuditLog(second);
        // Two JoinServices appending at once: the compare-and-swap on the head makes losers re-read, never fork.
        await Task.WhenAll(Enumerable.Range(0, 12).Select(i => (i % 2 == 0 ? a : b).AppendAsync(AuditKind.Release, $"node-{i}", "join")));
        var entries = await a.ReadAsync().ToListAsync();
        Assert.Equal(Enumerable.Range(1, 12).Select(i => (long)i), entries.Select(e => e.Sequence));
        Assert.Equal(12, entries.Select(e => e.Node).Distinct().Count());
        Assert.True((await a.VerifyAsync()).Intact);
    }

    [Fact]
    public async Task AppendAsync_ManyConcurrentCallersOnThreeWriters_EveryoneCommitted_ChainLinear()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var c0 = cluster.Connect();
        using var c1 = cluster.Connect();
        using var c2 = cluster.Connect();
        AuditLog[] logs = [new(c0), new(c1), new(c2)];
        // 300 releases at once on three JoinServices: group commit makes one transaction per batch; before it, callers
        // raced 16 compare-and-swaps each and most failed "the audit head kept moving".
        var appended = await Task.WhenAll(Enumerable.Range(0, 300).Select(i => logs[i % 3].AppendAsync(AuditKind.Release, $"node-{i}", "rejoin")));
        Assert.Equal(300, appended.Select(e => e.Sequence).Distinct().Count());
        var entries = await logs[0].ReadAsync().ToListAsync();
        Assert.Equal(Enumerable.Range(1, 300).Select(i => (long)i), entries.Select(e => e.Sequence));
        Assert.Equal(appended.Select(e => e.Hash).Order(), entries.Select(e => e.Hash).Order());
        Assert.True((await logs[0].VerifyAsync()).Intact);
    }
}
