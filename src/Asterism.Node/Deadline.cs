namespace Asterism.Node;

/// <summary>
/// A token that fires when the caller's token does or when <c>timeout</c> has passed on the given clock. CancelAfter
/// runs on real time; this timer comes from the <see cref="TimeProvider"/>, so a fake clock in tests fires it.
/// </summary>
public sealed class Deadline : IDisposable
{
    private readonly CancellationTokenSource _timer;
    private readonly CancellationTokenSource _linked;

    public Deadline(TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        _timer = new CancellationTokenSource(timeout, time);
        _linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _timer.Token);
    }

    /// <summary>Fires on the caller's cancellation or at the deadline.</summary>
    public CancellationToken Token => _linked.Token;

    /// <summary>Whether the time ran out (as opposed to the caller cancelling).</summary>
    public bool Expired => _timer.IsCancellationRequested;

    public void Dispose()
    {
        _linked.Dispose();
        _timer.Dispose();
    }
}
