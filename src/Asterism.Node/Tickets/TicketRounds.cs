using Asterism.Protocol;

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

    /// <summary>No endpoint of this round gave usable keys; the next round starts after the interval.</summary>
    void RoundFailed();
}

/// <summary>
/// The one retry loop of join and rejoin (Constellation's rejoin client): each round fetches the JoinService endpoints
/// and asks them in turn until one answer settles it; a failed round waits <paramref name="interval"/>. The endpoint
/// lookup and every endpoint attempt get <paramref name="timeout"/> each, so one hung JoinService cannot hold the
/// node. Every wait goes through <paramref name="time"/>: tests drive the rounds with a fake clock.
/// </summary>
public sealed class TicketRounds(IJoinEndpointSource endpoints, TimeSpan interval, TimeSpan timeout, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <summary>Runs rounds until <paramref name="requester"/> is settled or <paramref name="cancellationToken"/> fires; never throws on cancellation.</summary>
    public async Task RunAsync<TTicket>(ITicketRequester<TTicket> requester, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(requester);
        try
        {
            while (!cancellationToken.IsCancellationRequested && !requester.IsSettled)
            {
                if (await RoundAsync(requester, cancellationToken))
                {
                    return;
                }
                await Task.Delay(interval, _time, cancellationToken);
            }
        }
        catch (Exception) when (cancellationToken.IsCancellationRequested)
        {
            // Stopped (the race was decided elsewhere, or the node stops). A gRPC call cut off by the token ends in
            // an RpcException with status Cancelled, not an OperationCanceledException: both mean "stopped".
        }
    }

    /// <summary>True when the node has its keys (or was stopped); false when every endpoint failed.</summary>
    private async Task<bool> RoundAsync<TTicket>(ITicketRequester<TTicket> requester, CancellationToken cancellationToken)
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
                return false;
            }
        }
        requester.EndpointsListed(list);
        foreach (var endpoint in list)
        {
            if (cancellationToken.IsCancellationRequested || requester.IsSettled)
            {
                return true;
            }
            var error = await TryAsync(requester, endpoint, cancellationToken);
            if (error is null)
            {
                return true;
            }
            requester.EndpointFailed(endpoint, error);
        }
        if (cancellationToken.IsCancellationRequested)
        {
            return true;
        }
        requester.RoundFailed();
        return false;
    }

    private async Task<string?> TryAsync<TTicket>(ITicketRequester<TTicket> requester, string endpoint, CancellationToken cancellationToken)
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
                return Describe(ex, attempt);
            }
        }
        try
        {
            return await requester.ApplyAsync(endpoint, ticket, cancellationToken);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            return RpcErrors.Describe(ex);
        }
    }

    private string Describe(Exception ex, Deadline deadline) =>
        deadline.Expired ? $"timed out after {timeout.TotalSeconds:0.###} s" : RpcErrors.Describe(ex);
}
