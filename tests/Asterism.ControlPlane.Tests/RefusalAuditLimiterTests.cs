using Microsoft.Extensions.Time.Testing;

namespace Asterism.ControlPlane.Tests;

/// <summary>
/// RefusedRelease coalescing: a node refused in a loop leaves one entry per (node, reason) and window, the next one
/// carrying the count; different nodes and reasons stay apart; a failed append keeps the count; the chain in etcd
/// still verifies.
/// </summary>
public sealed class RefusalAuditLimiterTests
{
    private static readonly DateTimeOffset Start = new(2025, 3, 1, 12, 0, 0, TimeSpan.Zero);

    private sealed class Recorder
    {
        public List<(string Node, string Detail)> Written { get; } = [];

        public Exception? Fail { get; set; }

        public Task<AuditEntry> AppendAsync(string node, string detail, CancellationToken cancellationToken)
        {
            if (Fail is { } e)
            {
                return Task.FromException<AuditEntry>(e);
            }
            Written.Add((node, detail));
            return Task.FromResult(new AuditEntry(Written.Count, Start, AuditKind.RefusedRelease, node, detail, AuditEntry.Genesis, AuditEntry.Genesis));
        }
    }

    [Fact]
    public async Task RecordAsync_HundredRefusalsInOneWindow_OneEntry()
    {
        var clock = new FakeTimeProvider(Start);
        var recorder = new Recorder();
        var limiter = new RefusalAuditLimiter(recorder.AppendAsync, TimeSpan.FromSeconds(60), clock);
        var written = 0;
        for (var i = 0; i < 100; i++)
        {
            written += await limiter.RecordAsync("worker-0", "revoked", "revoked: disk d") is null ? 0 : 1;
            clock.Advance(TimeSpan.FromMilliseconds(500));
        }
        Assert.Equal(1, written);
        Assert.Equal([("worker-0", "revoked: disk d")], recorder.Written);
    }

    [Fact]
    public async Task RecordAsync_AfterTheWindow_OneEntryCarryingTheCount()
    {
        var clock = new FakeTimeProvider(Start);
        var recorder = new Recorder();
        var limiter = new RefusalAuditLimiter(recorder.AppendAsync, TimeSpan.FromSeconds(60), clock);
        await limiter.RecordAsync("worker-0", "revoked", "revoked: disk d");
        clock.Advance(TimeSpan.FromSeconds(2));
        for (var i = 0; i < 41; i++)
        {
            Assert.Null(await limiter.RecordAsync("worker-0", "revoked", "revoked: disk d"));
            clock.Advance(TimeSpan.FromSeconds(1));
        }
        clock.Advance(TimeSpan.FromSeconds(17));

        Assert.NotNull(await limiter.RecordAsync("worker-0", "revoked", "revoked: disk d"));
        Assert.Null(await limiter.RecordAsync("worker-0", "revoked", "revoked: disk d"));

        Assert.Equal(2, recorder.Written.Count);
        Assert.Equal("revoked: disk d (and 41 more refusals since 2025-03-01T12:00:02Z)", recorder.Written[1].Detail);
    }

    [Fact]
    public async Task RecordAsync_DifferentNodesAndReasons_NotMerged()
    {
        var clock = new FakeTimeProvider(Start);
        var recorder = new Recorder();
        var limiter = new RefusalAuditLimiter(recorder.AppendAsync, TimeSpan.FromSeconds(60), clock);
        for (var i = 0; i < 3; i++)
        {
            await limiter.RecordAsync("worker-0", "revoked", "revoked");
            await limiter.RecordAsync("worker-1", "revoked", "revoked");
            await limiter.RecordAsync("worker-0", "disk UUID differs from the registry", "disk UUID differs");
        }
        Assert.Equal([("worker-0", "revoked"), ("worker-1", "revoked"), ("worker-0", "disk UUID differs")], recorder.Written);
    }

    [Fact]
    public async Task RecordAsync_AppendFails_NextRefusalWritesWithTheCount()
    {
        var clock = new FakeTimeProvider(Start);
        var recorder = new Recorder();
        var limiter = new RefusalAuditLimiter(recorder.AppendAsync, TimeSpan.FromSeconds(60), clock);
        await limiter.RecordAsync("worker-0", "revoked", "r");
        clock.Advance(TimeSpan.FromSeconds(1));
        await limiter.RecordAsync("worker-0", "revoked", "r");
        clock.Advance(TimeSpan.FromSeconds(60));
        recorder.Fail = new ControlPlaneException(ControlPlaneError.NoQuorum, "no quorum");

        await Assert.ThrowsAsync<ControlPlaneException>(() => limiter.RecordAsync("worker-0", "revoked", "r"));
        recorder.Fail = null;
        // The failed attempt wrote nothing: no window started, so this one is written and counts both refusals.
        Assert.NotNull(await limiter.RecordAsync("worker-0", "revoked", "r"));

        Assert.Equal(["r", "r (and 2 more refusals since 2025-03-01T12:00:01Z)"], recorder.Written.Select(w => w.Detail));
    }

    [Fact]
    public async Task RecordAsync_ConcurrentRefusals_OneEntry()
    {
        var clock = new FakeTimeProvider(Start);
        var gate = new TaskCompletionSource();
        var writes = 0;
        var limiter = new RefusalAuditLimiter(async (node, detail, ct) =>
        {
            Interlocked.Increment(ref writes);
            await gate.Task;
            return new AuditEntry(1, Start, AuditKind.RefusedRelease, node, detail, AuditEntry.Genesis, AuditEntry.Genesis);
        }, TimeSpan.FromSeconds(60), clock);
        var calls = Enumerable.Range(0, 50).Select(_ => limiter.RecordAsync("worker-0", "revoked", "r")).ToList();
        gate.SetResult();
        var results = await Task.WhenAll(calls);
        Assert.Equal(1, writes);
        Assert.Single(results, r => r is not null);
    }

    [Fact]
    public async Task AppendRefusalAsync_RefusalLoopOnEtcd_FewEntriesAndChainIntact()
    {
        await using var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        var clock = new FakeTimeProvider(Start);
        var log = new AuditLog(connection, clock);
        await log.AppendAsync(AuditKind.Revocation, "worker-0", "revoked by the operator");
        for (var i = 0; i < 100; i++)
        {
            await log.AppendRefusalAsync("worker-0", "revoked", "revoked: disk d");
            await log.AppendRefusalAsync("worker-1", "revoked", "revoked: disk e");
            clock.Advance(TimeSpan.FromMilliseconds(500));
        }
        clock.Advance(TimeSpan.FromSeconds(60));
        await log.AppendRefusalAsync("worker-0", "revoked", "revoked: disk d");
        await log.AppendAsync(AuditKind.Release, "worker-2", "a release is appended every time");

        var entries = await log.ReadAsync().ToListAsync();
        Assert.Equal(
            [
                (AuditKind.Revocation, "worker-0", "revoked by the operator"),
                (AuditKind.RefusedRelease, "worker-0", "revoked: disk d"),
                (AuditKind.RefusedRelease, "worker-1", "revoked: disk e"),
                (AuditKind.RefusedRelease, "worker-0", "revoked: disk d (and 99 more refusals since 2025-03-01T12:00:00Z)"),
                (AuditKind.Release, "worker-2", "a release is appended every time"),
            ],
            entries.Select(e => (e.Kind, e.Node, e.Detail)));
        var verification = await log.VerifyAsync();
        Assert.True(verification.Intact, verification.Message);
    }
}
