using System.Net.Sockets;
using Asterism.Protocol;
using Grpc.Core;

namespace Asterism.Node.Tickets;

/// <summary>
/// What a join (first boot) or a rejoin (reboot) does inside <see cref="TicketRounds"/>: ask one endpoint, and hear
/// about failures so it can log and report them in its own words.
/// </summary>
/// <typeparam name="TTicket">The keys one answer carries.</typeparam>
public interface ITicketRequester<TTicket>
{
    /// <summary>True once another path (init, the RecoveryServer) has given the node its keys: stop asking.</summary>
    bool IsSettled { get; }

    /// <summary>
    /// Asks <paramref name="endpoint"/> once; <paramref name="cancellationToken"/> carries the per-attempt timeout. A
    /// throw is a failed endpoint, described by <see cref="RpcErrors.Describe"/>.
    /// </summary>
    Task<TTicket> RequestAsync(string endpoint, CancellationToken cancellationToken);

    /// <summary>
    /// Uses the keys <paramref name="endpoint"/> sent (taking ownership of <paramref name="ticket"/>), bounded only by
    /// the node's own token: a disk unlock or a PCR extension is never cut off half-way by the attempt timeout. Null:
    /// the node has its keys, stop; otherwise why these keys were not usable (the rounds go on).
    /// </summary>
    Task<string?> ApplyAsync(string endpoint, TTicket ticket, CancellationToken cancellationToken);

    /// <summary>The endpoint list could not be fetched (this round is over).</summary>
    void LookupFailed(string error);

    /// <summary>Fetched the endpoint list (before the first endpoint is asked).</summary>
    void EndpointsListed(IReadOnlyList<string> endpoints);

    /// <summary><paramref name="endpoint"/> did not give usable keys.</summary>
    void EndpointFailed(string endpoint, string error);

    /// <summary>No endpoint of this round gave usable keys; the next round starts after the interval (or sooner, see <see cref="RetrySchedule"/>).</summary>
    void RoundFailed();
}

/// <summary>
/// The one retry loop of join and rejoin (Constellation's rejoin client): each round fetches the JoinService endpoints
/// and asks them in turn until one answer settles it. A failed round waits <paramref name="interval"/>, except while the
/// control plane is on its way back (see <see cref="RetrySchedule"/>): then it retries sooner. The endpoint lookup and
/// every endpoint attempt get <paramref name="timeout"/> each, so one hung JoinService cannot hold the node. Every wait
/// goes through <paramref name="time"/>: tests drive the rounds with a fake clock (and <paramref name="jitter"/>, a
/// source of numbers in [0, 1), makes the schedule deterministic). Without <paramref name="quickRetries"/> every failed
/// round waits the full interval (the tests of join and rejoin that count intervals rely on it).
/// </summary>
public sealed class TicketRounds(IJoinEndpointSource endpoints, TimeSpan interval, TimeSpan timeout, TimeProvider? time = null, bool quickRetries = false, Func<double>? jitter = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly RetrySchedule? _schedule = quickRetries ? new(interval, jitter) : null;

    /// <summary>Runs rounds until <paramref name="requester"/> is settled or <paramref name="cancellationToken"/> fires; never throws on cancellation.</summary>
    public async Task RunAsync<TTicket>(ITicketRequester<TTicket> requester, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(requester);
        try
        {
            while (!cancellationToken.IsCancellationRequested && !requester.IsSettled)
            {
                var round = await RoundAsync(requester, cancellationToken);
                if (round is null)
                {
                    return;
                }
                await Task.Delay(_schedule?.Next(round) ?? interval, _time, cancellationToken);
            }
        }
        catch (Exception) when (cancellationToken.IsCancellationRequested)
        {
            // Stopped (the race was decided elsewhere, or the node stops). A gRPC call cut off by the token ends in
            // an RpcException with status Cancelled, not an OperationCanceledException: both mean "stopped".
        }
    }

    /// <summary>Null when the node has its keys (or was stopped); otherwise how each endpoint failed.</summary>
    private async Task<RoundOutcome?> RoundAsync<TTicket>(ITicketRequester<TTicket> requester, CancellationToken cancellationToken)
    {
        IReadOnlyList<string> list;
        using (var lookup = new Deadline(timeout, _time, cancellationToken))
        {
            try
            {
                list = await endpoints.GetEndpointsAsync(lookup.Token);
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                requester.LookupFailed(Describe(ex, lookup));
                return RoundOutcome.Other;
            }
        }
        requester.EndpointsListed(list);
        var failures = new List<(string Endpoint, EndpointFailure Kind)>(list.Count);
        foreach (var endpoint in list)
        {
            if (cancellationToken.IsCancellationRequested || requester.IsSettled)
            {
                return null;
            }
            var (error, kind) = await TryAsync(requester, endpoint, cancellationToken);
            if (error is null)
            {
                return null;
            }
            failures.Add((endpoint, kind));
            requester.EndpointFailed(endpoint, error);
        }
        if (cancellationToken.IsCancellationRequested)
        {
            return null;
        }
        requester.RoundFailed();
        return new RoundOutcome(failures);
    }

    private async Task<(string? Error, EndpointFailure Kind)> TryAsync<TTicket>(ITicketRequester<TTicket> requester, string endpoint, CancellationToken cancellationToken)
    {
        TTicket ticket;
        using (var attempt = new Deadline(timeout, _time, cancellationToken))
        {
            try
            {
                ticket = await requester.RequestAsync(endpoint, attempt.Token);
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                return (Describe(ex, attempt), attempt.Expired ? EndpointFailure.Other : Classify(ex));
            }
        }
        try
        {
            return (await requester.ApplyAsync(endpoint, ticket, cancellationToken), EndpointFailure.Other);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            return (RpcErrors.Describe(ex), EndpointFailure.Other);
        }
    }

    private string Describe(Exception ex, Deadline deadline) =>
        deadline.Expired ? $"timed out after {timeout.TotalSeconds:0.###} s" : RpcErrors.Describe(ex);

    /// <summary>
    /// Which failures mean "the control plane is not back yet": nothing listens on the port (a control plane still
    /// waiting for its key), or the JoinService answers Unavailable (no etcd quorum yet, or it sheds load). A refusal
    /// (PermissionDenied), a timeout or unusable keys are not: those rounds keep the full interval.
    /// </summary>
    internal static EndpointFailure Classify(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException ?? (e as RpcException)?.Status.DebugException)
        {
            if (e is SocketException { SocketErrorCode: SocketError.ConnectionRefused })
            {
                return EndpointFailure.NotListening;
            }
        }
        return exception is RpcException { StatusCode: StatusCode.Unavailable } ? EndpointFailure.Unavailable : EndpointFailure.Other;
    }
}

/// <summary>How one endpoint of a failed round failed, as far as the retry schedule cares.</summary>
public enum EndpointFailure
{
    /// <summary>Connection refused: no JoinService listening there (yet).</summary>
    NotListening,

    /// <summary>The JoinService answered Unavailable: e.g. "control plane has no quorum", or it shed the call.</summary>
    Unavailable,

    /// <summary>Anything else: refused, timed out, unusable keys, no endpoint list.</summary>
    Other,
}

/// <summary>How every endpoint of a failed round failed (in the order asked).</summary>
public sealed class RoundOutcome(IReadOnlyList<(string Endpoint, EndpointFailure Kind)> failures)
{
    /// <summary>A round without endpoint answers that tell anything (e.g. the endpoint list could not be fetched).</summary>
    public static readonly RoundOutcome Other = new([]);

    /// <summary>Each endpoint asked and how it failed.</summary>
    public IReadOnlyList<(string Endpoint, EndpointFailure Kind)> Failures { get; } = failures;

    /// <summary>True when at least one endpoint was asked and every one is only not back yet.</summary>
    public bool IsWaiting => Failures.Count > 0 && Failures.All(f => f.Kind != EndpointFailure.Other);

    /// <summary>Whether <paramref name="other"/> saw the same endpoints fail the same way.</summary>
    public bool SameAs(RoundOutcome? other) => other is not null && Failures.SequenceEqual(other.Failures);
}

/// <summary>
/// When the next round starts. A round that failed for a reason other than "not back yet" (a refusal, a timeout, bad
/// keys) waits the full interval, as before. A round in which every endpoint was only not back yet (connection refused,
/// Unavailable "no quorum") means the control plane is recovering: the node retries after a capped exponential backoff
/// with jitter, 250 ms, 500 ms, 1 s, … up to the interval (each step drawn from its upper half, the cap itself exact),
/// so a worker sees the quorum come back within a fraction of a second instead of up to a whole interval later. The
/// backoff restarts at 250 ms only when the endpoints' answers change (e.g. connection refused → no quorum: a control
/// plane just booted, the quorum is near); while they stay the same it climbs to the interval and stays there. So a
/// long outage costs what it did before (one round per interval), and each change the control plane goes through buys
/// at most log2(interval / 250 ms) + 1 quicker rounds (4 for the local clusters' 2 s): the number of rounds stays
/// bounded by the number of changes, with no retry storm.
/// </summary>
public sealed class RetrySchedule
{
    /// <summary>The first quick retry after a change.</summary>
    public static readonly TimeSpan First = TimeSpan.FromMilliseconds(250);

    private readonly TimeSpan _interval;
    private readonly Func<double> _jitter;
    private RoundOutcome? _last;
    private TimeSpan _step;

    /// <summary>A schedule capped at <paramref name="interval"/>; <paramref name="jitter"/> returns numbers in [0, 1).</summary>
    public RetrySchedule(TimeSpan interval, Func<double>? jitter = null)
    {
        _interval = interval;
        _jitter = jitter ?? Random.Shared.NextDouble;
    }

    /// <summary>The wait before the round after <paramref name="round"/>.</summary>
    public TimeSpan Next(RoundOutcome round)
    {
        ArgumentNullException.ThrowIfNull(round);
        var changed = !round.SameAs(_last);
        _last = round;
        if (!round.IsWaiting || _interval <= First)
        {
            _step = TimeSpan.Zero;
            return _interval;
        }
        _step = changed || _step == TimeSpan.Zero ? First : _step * 2;
        if (_step >= _interval)
        {
            _step = _interval;
            return _interval;
        }
        // The upper half of the step: nodes that failed together (they all rebooted at once) spread out.
        return _step / 2 + _step / 2 * Math.Clamp(_jitter(), 0, 1);
    }
}
