using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Atls.Tests;

/// <summary>The per-listener budget on its own, with a manual clock: who is shed, who is refused, who runs when.</summary>
public sealed class HandshakeBudgetTests
{
    private readonly ManualTimeProvider _time = new();

    private HandshakeBudget Budget(int maxPending, int maxConcurrent = 1) => new(new AtlsServerOptions
    {
        MaxPendingHandshakes = maxPending,
        MaxConcurrentAttestations = maxConcurrent,
        ClientHelloTimeout = TimeSpan.FromSeconds(2),
        TimeProvider = _time,
    }, NullLogger.Instance);

    private sealed class Connection
    {
        public bool Aborted { get; private set; }

        public PendingHandshake? Admit(HandshakeBudget budget, string name) => budget.TryAdmit(() => Aborted = true, name);
    }

    [Fact]
    public void TryAdmit_NoClientHelloInTime_Aborted()
    {
        var budget = Budget(4);
        var idle = new Connection();
        var prompt = new Connection();
        using var idlePending = idle.Admit(budget, "idle")!;
        using var promptPending = prompt.Admit(budget, "prompt")!;
        promptPending.ClientHelloReceived();

        _time.Advance(TimeSpan.FromSeconds(1.9));
        Assert.False(idle.Aborted);
        _time.Advance(TimeSpan.FromSeconds(0.2));

        Assert.True(idle.Aborted);
        Assert.Equal(1, budget.ClientHelloTimeouts);
        Assert.True(idlePending.Aborted.IsCancellationRequested);
        Assert.False(prompt.Aborted);
    }

    [Fact]
    public void TryAdmit_AtCap_ShedsOldestWithoutClientHelloFirst()
    {
        var budget = Budget(3);
        var served = new Connection();
        var idleOld = new Connection();
        var idleNew = new Connection();
        using var servedPending = served.Admit(budget, "served")!;
        servedPending.ClientHelloReceived();
        using var a = idleOld.Admit(budget, "idle-old")!;
        using var b = idleNew.Admit(budget, "idle-new")!;

        using var newcomer = new Connection().Admit(budget, "newcomer");

        Assert.NotNull(newcomer);
        Assert.True(idleOld.Aborted);
        Assert.False(idleNew.Aborted);
        Assert.False(served.Aborted);
        Assert.Equal(3, budget.Pending);
        Assert.Equal(1, budget.Shed);
    }

    [Fact]
    public async Task TryAdmit_AllPendingQueuedForWork_NewcomerRefusedAndQueueKept()
    {
        var budget = Budget(2, maxConcurrent: 1);
        var first = new Connection();
        var second = new Connection();
        using var p1 = first.Admit(budget, "first")!;
        using var p2 = second.Admit(budget, "second")!;
        var release = new TaskCompletionSource<int>();
        var running = p1.RunAttestationAsync(_ => new ValueTask<int>(release.Task), CancellationToken.None).AsTask();
        var queued = p2.RunAttestationAsync(_ => ValueTask.FromResult(2), CancellationToken.None).AsTask();

        var newcomer = new Connection();
        Assert.Null(newcomer.Admit(budget, "newcomer"));

        Assert.False(first.Aborted);
        Assert.False(second.Aborted);
        Assert.Equal(1, budget.Refused);
        release.SetResult(1);
        Assert.Equal(1, await running);
        Assert.Equal(2, await queued);
    }

    [Fact]
    public async Task RunAttestationAsync_ManyWaiters_FirstComeFirstServedWithinConcurrency()
    {
        var budget = Budget(16, maxConcurrent: 2);
        var gates = Enumerable.Range(0, 6).Select(_ => new TaskCompletionSource()).ToArray();
        var started = Enumerable.Range(0, 6).Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).ToArray();
        var order = new List<int>();
        var running = 0;
        var maxRunning = 0;
        var tasks = new List<Task>();
        var pendings = new List<PendingHandshake>();
        for (var i = 0; i < gates.Length; i++)
        {
            var index = i;
            var pending = new Connection().Admit(budget, $"c{i}")!;
            pendings.Add(pending);
            tasks.Add(pending.RunAttestationAsync(async _ =>
            {
                lock (order)
                {
                    order.Add(index);
                    maxRunning = Math.Max(maxRunning, ++running);
                }
                started[index].SetResult();
                await gates[index].Task;
                lock (order)
                {
                    running--;
                }
                return index;
            }, CancellationToken.None).AsTask());
        }
        Assert.Equal([0, 1], order);

        // Release out of order: the next waiter in line still goes first.
        gates[1].SetResult();
        await started[2].Task;
        gates[0].SetResult();
        await started[3].Task;
        for (var i = 2; i < gates.Length; i++)
        {
            gates[i].SetResult();
            if (i + 2 < gates.Length)
            {
                await started[i + 2].Task;
            }
        }
        await Task.WhenAll(tasks);

        Assert.Equal([0, 1, 2, 3, 4, 5], order);
        Assert.Equal(2, maxRunning);
        Assert.Equal(2, budget.MaxObservedRunning);
        pendings.ForEach(p => p.Dispose());
        Assert.Equal(0, budget.Pending);
    }

    [Fact]
    public async Task RunAttestationAsync_WaiterLeaves_QueueMovesOnAndSlotIsHeldUntilWorkEnds()
    {
        var budget = Budget(8, maxConcurrent: 1);
        using var p1 = new Connection().Admit(budget, "slow")!;
        using var p2 = new Connection().Admit(budget, "leaves")!;
        using var p3 = new Connection().Admit(budget, "next")!;
        var slowWork = new TaskCompletionSource<int>();
        using var cancelSlow = new CancellationTokenSource();
        var slow = p1.RunAttestationAsync(_ => new ValueTask<int>(slowWork.Task), cancelSlow.Token).AsTask();
        using var leave = new CancellationTokenSource();
        var leaving = p2.RunAttestationAsync(_ => ValueTask.FromResult(2), leave.Token).AsTask();
        var ran3 = false;
        var next = p3.RunAttestationAsync(_ =>
        {
            ran3 = true;
            return ValueTask.FromResult(3);
        }, CancellationToken.None).AsTask();

        await leave.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => leaving);
        // The slow work ignores its cancellation (as a TPM quote in flight would): its slot stays taken.
        await cancelSlow.CancelAsync();
        Assert.False(ran3);
        slowWork.SetResult(1);

        Assert.Equal(1, await slow);
        Assert.Equal(3, await next);
        Assert.Equal(1, budget.MaxObservedRunning);
    }

    [Fact]
    public void Dispose_AfterAuthentication_NotAbortedByLateTimerAndCountedOut()
    {
        var budget = Budget(2);
        var connection = new Connection();
        var pending = connection.Admit(budget, "authenticated")!;

        pending.Dispose();
        _time.Advance(TimeSpan.FromSeconds(5));

        Assert.False(connection.Aborted);
        Assert.Equal(0, budget.Pending);
    }
}

/// <summary>A clock the test moves; timers fire when their time has come.</summary>
public sealed class ManualTimeProvider : TimeProvider
{
    private readonly List<ManualTimer> _timers = [];
    private DateTimeOffset _now = new(2025, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private long _ticks;

    public override DateTimeOffset GetUtcNow() => _now;

    public override long GetTimestamp() => _ticks;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public void Advance(TimeSpan by)
    {
        _now += by;
        _ticks += by.Ticks;
        List<ManualTimer> due;
        lock (_timers)
        {
            due = _timers.Where(t => t.Due <= _ticks).ToList();
            _timers.RemoveAll(due.Contains);
        }
        due.ForEach(t => t.Fire());
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = new ManualTimer(this, callback, state);
        timer.Change(dueTime, period);
        return timer;
    }

    private sealed class ManualTimer(ManualTimeProvider owner, TimerCallback callback, object? state) : ITimer
    {
        public long Due { get; private set; }

        public void Fire() => callback(state);

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            lock (owner._timers)
            {
                owner._timers.Remove(this);
                if (dueTime != Timeout.InfiniteTimeSpan)
                {
                    Due = owner._ticks + dueTime.Ticks;
                    owner._timers.Add(this);
                }
            }
            return true;
        }

        public void Dispose() => Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
