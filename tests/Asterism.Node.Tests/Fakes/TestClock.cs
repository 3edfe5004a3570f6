using System.Threading.Channels;
using Microsoft.Extensions.Time.Testing;

namespace Asterism.Node.Tests.Fakes;

/// <summary>
/// A fake clock that also tells the test when code under test starts waiting: every timer it creates (Task.Delay,
/// a CancellationTokenSource with a timeout) is announced with its due time, so a test advances the clock only once the
/// wait exists — never a real sleep, never a race between Advance and the timer.
/// </summary>
public sealed class TestClock : FakeTimeProvider
{
    private readonly Channel<TimeSpan> _timers = Channel.CreateUnbounded<TimeSpan>();

    public TestClock()
        : base(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero))
    {
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = base.CreateTimer(callback, state, dueTime, period);
        _timers.Writer.TryWrite(dueTime);
        return timer;
    }

    /// <summary>Waits (in real time, bounded by the test's token) until a timer with <paramref name="dueTime"/> is created.</summary>
    public async Task WaitForTimerAsync(TimeSpan dueTime, CancellationToken cancellationToken = default)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(TestLimits.Hang);
        while (await _timers.Reader.ReadAsync(limit.Token) != dueTime)
        {
        }
    }

    /// <summary>The due time of the next timer created, or null once <paramref name="run"/> ended first.</summary>
    public async Task<TimeSpan?> NextTimerAsync(Task run)
    {
        using var limit = new CancellationTokenSource(TestLimits.Hang);
        var next = _timers.Reader.ReadAsync(limit.Token).AsTask();
        return await Task.WhenAny(next, run) == next ? await next : null;
    }

    /// <summary>Waits for a timer of <paramref name="dueTime"/>, then moves the clock by exactly that much.</summary>
    public async Task FireAsync(TimeSpan dueTime)
    {
        await WaitForTimerAsync(dueTime);
        Advance(dueTime);
    }
}

/// <summary>How long a unit test waits in real time for something that should happen at once: a guard against hangs, not a timing check.</summary>
public static class TestLimits
{
    public static readonly TimeSpan Hang = TimeSpan.FromSeconds(60);
}
