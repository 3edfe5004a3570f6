using System.Diagnostics;

namespace Asterism.Tests;

/// <summary>
/// The one wait-until loop of the test projects (linked into each that waits on real processes or sockets): probe,
/// check, wait one interval, until the condition holds or the timeout passes. The timeout is a hang guard, never a
/// timing assertion — tests that check timing use a fake clock (tests/Asterism.Node.Tests).
/// </summary>
public static class Poll
{
    /// <summary>
    /// The hang detector of process and network tests: long enough that a machine at load average 100 on 2 cores
    /// still gets there, so reaching it means the thing hung, never that it was slow.
    /// </summary>
    public static readonly TimeSpan Hang = TimeSpan.FromSeconds(60);

    /// <summary>How often a condition is re-checked unless the caller says otherwise.</summary>
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Probes until <paramref name="done"/> holds for the probed value or <paramref name="timeout"/> has passed; returns
    /// the last value either way, so the caller can report what it saw.
    /// </summary>
    public static async Task<(T Last, bool Reached)> UntilAsync<T>(Func<Task<T>> probe, Func<T, bool> done, TimeSpan timeout, TimeSpan? interval = null)
    {
        ArgumentNullException.ThrowIfNull(probe);
        ArgumentNullException.ThrowIfNull(done);
        var started = Stopwatch.GetTimestamp();
        using var timer = new PeriodicTimer(interval ?? DefaultInterval);
        while (true)
        {
            var value = await probe();
            if (done(value))
            {
                return (value, true);
            }
            if (Stopwatch.GetElapsedTime(started) > timeout)
            {
                return (value, false);
            }
            await timer.WaitForNextTickAsync();
        }
    }

    /// <summary>Whether <paramref name="condition"/> came true within <paramref name="timeout"/>.</summary>
    public static async Task<bool> UntilAsync(Func<Task<bool>> condition, TimeSpan timeout, TimeSpan? interval = null) =>
        (await UntilAsync(condition, reached => reached, timeout, interval)).Reached;

    /// <summary>Whether <paramref name="condition"/> came true within <paramref name="timeout"/>.</summary>
    public static Task<bool> UntilAsync(Func<bool> condition, TimeSpan timeout, TimeSpan? interval = null) =>
        UntilAsync(() => Task.FromResult(condition()), timeout, interval);

    /// <summary>Waits for <paramref name="condition"/>; throws naming <paramref name="what"/> when it does not come true in time.</summary>
    public static async Task RequireAsync(Func<Task<bool>> condition, TimeSpan timeout, string what, TimeSpan? interval = null)
    {
        if (!await UntilAsync(condition, timeout, interval))
        {
            throw new TimeoutException($"timed out after {timeout.TotalSeconds:0.#} s waiting for {what}");
        }
    }

    /// <summary>Waits for <paramref name="condition"/>; throws naming <paramref name="what"/> when it does not come true in time.</summary>
    public static Task RequireAsync(Func<bool> condition, TimeSpan timeout, string what, TimeSpan? interval = null) =>
        RequireAsync(() => Task.FromResult(condition()), timeout, what, interval);
}
