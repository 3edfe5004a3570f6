using Microsoft.Extensions.Logging;

namespace Asterism.Atls;

/// <summary>
/// The work an aTLS listener spends on connections that have not authenticated yet. Every connection is admitted
/// as one <see cref="PendingHandshake"/> until its handshake and validation are done. Three rules, reasoned in the
/// README ("Work budgets"):
/// <list type="bullet">
/// <item>a connection must deliver its ClientHello within <see cref="AtlsServerOptions.ClientHelloTimeout"/>;</item>
/// <item>attestation work (issuing, validating) runs at most <see cref="AtlsServerOptions.MaxConcurrentAttestations"/>
/// at a time, first come first served; a connection waiting for or running it is never shed;</item>
/// <item>at <see cref="AtlsServerOptions.MaxPendingHandshakes"/> a newcomer sheds the oldest connection still without
/// a ClientHello; failing that, the one that has waited longest on its peer since the server's flight; only when every
/// pending connection is queued for (or running) attestation work is the newcomer refused.</item>
/// <item>authenticated connections are held at most <see cref="AtlsServerOptions.MaxAuthenticatedConnections"/>; a
/// newcomer beyond it closes the oldest of them.</item>
/// </list>
/// </summary>
internal sealed class HandshakeBudget
{
    private static readonly TimeSpan WarningInterval = TimeSpan.FromSeconds(10);

    private readonly Lock _sync = new();
    private readonly LinkedList<PendingHandshake> _awaitingHello = new();
    private readonly LinkedList<PendingHandshake> _awaitingPeer = new();
    private readonly LinkedList<TaskCompletionSource> _workQueue = new();
    private readonly LinkedList<AuthenticatedConnection> _authenticated = new();
    private readonly int _maxAuthenticated;
    private readonly int _maxPending;
    private readonly int _maxConcurrent;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private long _lastWarning = long.MinValue;
    private int _pending;
    private int _running;
    private long _shed;
    private long _refused;
    private long _helloTimeouts;
    private long _authenticatedShed;

    public HandshakeBudget(AtlsServerOptions options, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxPendingHandshakes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxConcurrentAttestations, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(options.ClientHelloTimeout, TimeSpan.Zero);
        _maxPending = options.MaxPendingHandshakes;
        _maxConcurrent = options.MaxConcurrentAttestations;
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxAuthenticatedConnections, 1);
        _maxAuthenticated = options.MaxAuthenticatedConnections;
        ClientHelloTimeout = options.ClientHelloTimeout;
        _time = options.TimeProvider;
        _logger = logger;
        options.BudgetCreated?.Invoke(this);
    }

    public TimeSpan ClientHelloTimeout { get; }

    /// <summary>Connections admitted and not yet authenticated or closed.</summary>
    public int Pending => Volatile.Read(ref _pending);

    public int MaxObservedPending { get; private set; }

    public int MaxObservedRunning { get; private set; }

    public long Shed => Interlocked.Read(ref _shed);

    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>Connections closed for sending no ClientHello within <see cref="ClientHelloTimeout"/>.</summary>
    public long ClientHelloTimeouts => Interlocked.Read(ref _helloTimeouts);

    internal void CountClientHelloTimeout() => Interlocked.Increment(ref _helloTimeouts);

    /// <summary>Authenticated connections held now.</summary>
    public int Authenticated
    {
        get
        {
            lock (_sync)
            {
                return _authenticated.Count;
            }
        }
    }

    public int MaxObservedAuthenticated { get; private set; }

    /// <summary>Authenticated connections closed to make room for a newer one.</summary>
    public long AuthenticatedShed => Interlocked.Read(ref _authenticatedShed);

    /// <summary>
    /// Holds an authenticated connection until it closes (dispose the result). At the limit the oldest one is closed
    /// with <c>abort</c> to make room: a newcomer is never refused, so a flood of connections that authenticated and
    /// then idle cannot lock the operator out; it must keep completing handshakes (each queued for attestation work,
    /// first come first served) to push a connection out.
    /// </summary>
    public IDisposable AdmitAuthenticated(Action abort, string peer)
    {
        ArgumentNullException.ThrowIfNull(abort);
        AuthenticatedConnection? victim = null;
        var admitted = new AuthenticatedConnection(this, abort, peer);
        lock (_sync)
        {
            if (_authenticated.Count >= _maxAuthenticated && _authenticated.First is { } oldest)
            {
                victim = oldest.Value;
                _authenticated.RemoveFirst();
                victim.Node = null;
                Interlocked.Increment(ref _authenticatedShed);
                AtlsLog.AuthenticatedShed(_logger, victim.Peer);
            }
            admitted.Node = _authenticated.AddLast(admitted);
            MaxObservedAuthenticated = Math.Max(MaxObservedAuthenticated, _authenticated.Count);
        }
        // Outside the lock: aborting runs the victim's cancellation callbacks.
        victim?.Abort();
        return admitted;
    }

    private void ReleaseAuthenticated(AuthenticatedConnection connection)
    {
        lock (_sync)
        {
            if (connection.Node?.List is { } list)
            {
                list.Remove(connection.Node);
            }
            connection.Node = null;
        }
    }

    /// <summary>One authenticated connection's place; disposing it (the connection closed) frees the place.</summary>
    private sealed class AuthenticatedConnection(HandshakeBudget budget, Action abort, string peer) : IDisposable
    {
        public string Peer { get; } = peer;

        /// <summary>Under the budget's lock.</summary>
        public LinkedListNode<AuthenticatedConnection>? Node { get; set; }

        public void Abort() => abort();

        public void Dispose() => budget.ReleaseAuthenticated(this);
    }

    /// <summary>
    /// Admits a new connection; <paramref name="abort"/> closes it when it is shed or too slow with its ClientHello.
    /// Null: refused (every pending connection is queued for attestation work); close it at once.
    /// </summary>
    public PendingHandshake? TryAdmit(Action abort, string peer)
    {
        ArgumentNullException.ThrowIfNull(abort);
        PendingHandshake? victim = null;
        PendingHandshake admitted;
        lock (_sync)
        {
            if (_pending >= _maxPending)
            {
                // A connection without ClientHello has cost nothing and proven nothing; one past the server's flight
                // has cost a document but keeps us waiting. Queued work is never shed (see the README).
                var stage = _awaitingHello.First is not null ? "shed-before-hello" : "shed-after-flight";
                if ((_awaitingHello.First ?? _awaitingPeer.First) is not { } oldest)
                {
                    Interlocked.Increment(ref _refused);
                    WarnOverloaded();
                    AtlsLog.HandshakeShed(_logger, "refused", peer);
                    return null;
                }
                victim = oldest.Value;
                victim.Unlist();
                // Counted out now, so the cap holds while the victim's connection is still closing.
                victim.Counted = false;
                _pending--;
                Interlocked.Increment(ref _shed);
                WarnOverloaded();
                AtlsLog.HandshakeShed(_logger, stage, victim.Peer);
            }
            _pending++;
            MaxObservedPending = Math.Max(MaxObservedPending, _pending);
            admitted = new PendingHandshake(this, abort, peer);
            admitted.List(_awaitingHello.AddLast(admitted));
        }
        // Outside the lock: aborting runs the victim's cancellation callbacks.
        victim?.Abort();
        admitted.StartClientHelloTimer(ClientHelloTimeout, _time);
        return admitted;
    }

    /// <summary>Its turn is the peer's again; among these, the one that has waited longest is shed first.</summary>
    internal void WaitOnPeer(PendingHandshake pending)
    {
        lock (_sync)
        {
            if (pending.Counted)
            {
                pending.Unlist();
                pending.List(_awaitingPeer.AddLast(pending));
            }
        }
    }

    internal void StopWaitingOnPeer(PendingHandshake pending)
    {
        lock (_sync)
        {
            pending.Unlist();
        }
    }

    internal void Release(PendingHandshake pending)
    {
        lock (_sync)
        {
            pending.Unlist();
            if (pending.Counted)
            {
                pending.Counted = false;
                _pending--;
            }
        }
    }

    /// <summary>Waits for a work slot, first come first served; a cancelled waiter leaves the queue.</summary>
    internal async ValueTask EnterWorkAsync(CancellationToken cancellationToken)
    {
        LinkedListNode<TaskCompletionSource> node;
        lock (_sync)
        {
            if (_running < _maxConcurrent && _workQueue.Count == 0)
            {
                _running++;
                MaxObservedRunning = Math.Max(MaxObservedRunning, _running);
                return;
            }
            node = _workQueue.AddLast(new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        }
        try
        {
            await node.Value.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            lock (_sync)
            {
                if (node.List is not null)
                {
                    _workQueue.Remove(node);
                    throw;
                }
            }
            // The slot was handed over just as the wait was cancelled: give it on.
            ExitWork();
            throw;
        }
    }

    /// <summary>Hands the slot straight to the next waiter, so a newcomer cannot overtake the queue.</summary>
    internal void ExitWork()
    {
        TaskCompletionSource? next = null;
        lock (_sync)
        {
            if (_workQueue.First is { } first)
            {
                _workQueue.RemoveFirst();
                next = first.Value;
            }
            else
            {
                _running--;
            }
        }
        next?.SetResult();
    }

    /// <summary>One Warning per interval at most: a flood must not flood the log too (each event is at Debug).</summary>
    private void WarnOverloaded()
    {
        var now = _time.GetTimestamp();
        if (_lastWarning != long.MinValue && _time.GetElapsedTime(_lastWarning, now) < WarningInterval)
        {
            return;
        }
        _lastWarning = now;
        AtlsLog.HandshakeBudgetExceeded(_logger, _maxPending, Shed, Refused);
    }
}

/// <summary>One unauthenticated connection's place in its listener's <see cref="HandshakeBudget"/>.</summary>
internal sealed class PendingHandshake : IDisposable
{
    private readonly HandshakeBudget _budget;
    private readonly Action _abort;
    private readonly CancellationTokenSource _cancel = new();
    private LinkedListNode<PendingHandshake>? _node;
    private ITimer? _helloTimer;
    private int _aborted;
    private int _released;

    internal PendingHandshake(HandshakeBudget budget, Action abort, string peer)
    {
        _budget = budget;
        _abort = abort;
        Peer = peer;
    }

    public string Peer { get; }

    /// <summary>Cancelled when the connection is shed or sent no ClientHello in time.</summary>
    public CancellationToken Aborted => _cancel.Token;

    /// <summary>Counted in the budget's pending connections; under the budget's lock.</summary>
    internal bool Counted { get; set; } = true;

    /// <summary>The ClientHello is in: no longer shed before the connections still without one.</summary>
    public void ClientHelloReceived()
    {
        if (Interlocked.Exchange(ref _helloTimer, null) is { } timer)
        {
            timer.Dispose();
            _budget.WaitOnPeer(this);
        }
    }

    /// <summary>
    /// Runs attestation work within the listener's concurrency and FIFO order. The slot is held until
    /// <paramref name="work"/> has really finished, even when cancelled, so the issuer never runs more often at once
    /// than configured. Meanwhile the connection cannot be shed; afterwards it waits on its peer again.
    /// </summary>
    public async ValueTask<T> RunAttestationAsync<T>(Func<CancellationToken, ValueTask<T>> work, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(work);
        Interlocked.Exchange(ref _helloTimer, null)?.Dispose();
        _budget.StopWaitingOnPeer(this);
        try
        {
            await _budget.EnterWorkAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                return await work(cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _budget.ExitWork();
            }
        }
        finally
        {
            _budget.WaitOnPeer(this);
        }
    }

    /// <summary>Authenticated or closed: leaves the budget (idempotent).</summary>
    public void Dispose()
    {
        Interlocked.Exchange(ref _helloTimer, null)?.Dispose();
        if (Interlocked.Exchange(ref _released, 1) == 0)
        {
            // _cancel is not disposed: a late shed may still cancel it, which is harmless then.
            _budget.Release(this);
        }
    }

    internal void StartClientHelloTimer(TimeSpan timeout, TimeProvider time)
    {
        var timer = time.CreateTimer(static state => ((PendingHandshake)state!).ClientHelloTimedOut(), this, timeout, Timeout.InfiniteTimeSpan);
        if (Interlocked.CompareExchange(ref _helloTimer, timer, null) is not null)
        {
            timer.Dispose();
        }
    }

    private void ClientHelloTimedOut()
    {
        if (Volatile.Read(ref _helloTimer) is not null)
        {
            _budget.CountClientHelloTimeout();
            Abort();
        }
    }

    internal void Abort()
    {
        // An authenticated connection is no longer the budget's to close.
        if (Volatile.Read(ref _released) != 0 || Interlocked.Exchange(ref _aborted, 1) != 0)
        {
            return;
        }
        _cancel.Cancel();
        _abort();
    }

    /// <summary>Under the budget's lock.</summary>
    internal void List(LinkedListNode<PendingHandshake> node) => _node = node;

    /// <summary>Under the budget's lock.</summary>
    internal void Unlist()
    {
        if (_node?.List is { } list)
        {
            list.Remove(_node);
        }
        _node = null;
    }
}
