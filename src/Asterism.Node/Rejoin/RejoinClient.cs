using Asterism.Crypto;
using Asterism.Logging;
using Asterism.Node.BootProgress;
using Asterism.Node.Tickets;
using Asterism.Node.Unlock;
using Asterism.Protocol;
using Asterism.Protocol.Join;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Rejoin;

/// <summary>
/// Asks every JoinService endpoint, round after round (<see cref="TicketRounds"/>), for this disk's key
/// (IssueRejoinTicket) and offers each answer to the <see cref="KeyRace"/>; stops when the race is decided or it is
/// cancelled.
/// </summary>
public sealed class RejoinClient(
    string diskUuid,
    TicketRounds rounds,
    ITicketClient tickets,
    KeyRace race,
    BootStatusTracker status,
    ILoggerFactory loggers) : ITicketRequester<RejoinKeys>
{
    private readonly ILogger _log = loggers.CreateLogger(NodeLog.RejoinClient.Category);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        NodeLog.RejoinClient.Starting(_log);
        try
        {
            await rounds.RunAsync(this, cancellationToken);
        }
        finally
        {
            NodeLog.RejoinClient.Stopped(_log);
        }
    }

    bool ITicketRequester<RejoinKeys>.IsSettled => race.IsDecided;

    async Task<RejoinKeys> ITicketRequester<RejoinKeys>.RequestAsync(string endpoint, CancellationToken cancellationToken)
    {
        NodeLog.RejoinClient.RequestingTicket(_log, endpoint);
        var response = await tickets.IssueRejoinTicketAsync(endpoint, new IssueRejoinTicketRequest { DiskUuid = diskUuid }, cancellationToken);
        try
        {
            if (response.StateDiskKey.Length != KeyDerivation.KeyLength || response.MeasurementSecret.Length != KeyDerivation.KeyLength)
            {
                throw new InvalidDataException("rejoin ticket has keys of the wrong length");
            }
            var hasNext = response.NextKeyGeneration != 0;
            if (hasNext && (response.NextStateDiskKey.Length != KeyDerivation.KeyLength || response.NextMeasurementSecret.Length != KeyDerivation.KeyLength))
            {
                throw new InvalidDataException("rejoin ticket has next-generation keys of the wrong length");
            }
            var current = new ReceivedKeys(SecretBytes.CopyOf(response.StateDiskKey.Span), SecretBytes.CopyOf(response.MeasurementSecret.Span), "rejoin");
            // While a rotation is pending the keyslot may already hold the next generation's key (a crash after the
            // flip, before the confirmation reached the registry): that pair is offered too, after the registry's.
            var next = hasNext
                ? new ReceivedKeys(SecretBytes.CopyOf(response.NextStateDiskKey.Span), SecretBytes.CopyOf(response.NextMeasurementSecret.Span), "rejoin")
                : null;
            return new RejoinKeys(current, next);
        }
        finally
        {
            SecretFields.Zero(response.StateDiskKey, response.MeasurementSecret, response.NextStateDiskKey, response.NextMeasurementSecret);
        }
    }

    async Task<string?> ITicketRequester<RejoinKeys>.ApplyAsync(string endpoint, RejoinKeys ticket, CancellationToken cancellationToken)
    {
        var next = ticket.Next;
        KeyVerdict verdict;
        try
        {
            // The race owns (and disposes) each pair offered to it.
            verdict = await race.OfferAsync(ticket.Current, cancellationToken);
            if (verdict is KeyVerdict.DiskKeyRejected or KeyVerdict.MeasurementSecretRejected && next is not null)
            {
                var offered = next;
                next = null;
                verdict = await race.OfferAsync(offered, cancellationToken);
            }
        }
        finally
        {
            next?.Dispose();
        }
        if (verdict == KeyVerdict.Accepted)
        {
            NodeLog.RejoinClient.RetrievedTicket(_log);
        }
        return verdict is KeyVerdict.Accepted or KeyVerdict.AlreadyRecovered ? null : verdict.ToStatus().Detail;
    }

    void ITicketRequester<RejoinKeys>.LookupFailed(string error)
    {
        NodeLog.RejoinClient.FailedToGetEndpoints(_log, error);
        status.RejoinAttemptFailed("failed to get control-plane endpoints: " + error);
    }

    void ITicketRequester<RejoinKeys>.EndpointsListed(IReadOnlyList<string> endpoints) =>
        NodeLog.RejoinClient.ReceivedEndpoints(_log, endpoints);

    void ITicketRequester<RejoinKeys>.EndpointFailed(string endpoint, string error)
    {
        NodeLog.RejoinClient.FailedOnEndpoint(_log, error, endpoint);
        status.RejoinAttemptFailed($"{endpoint}: {error}");
    }

    void ITicketRequester<RejoinKeys>.RoundFailed() => NodeLog.RejoinClient.FailedOnAllEndpoints(_log);
}

/// <summary>One rejoin answer: the pair of the node's registry generation and, during a pending rotation, the next one.</summary>
public sealed class RejoinKeys(ReceivedKeys current, ReceivedKeys? next) : IDisposable
{
    /// <summary>The keys of the node's registry generation.</summary>
    public ReceivedKeys Current { get; } = current;

    /// <summary>The keys of the pending rotation's generation, or null.</summary>
    public ReceivedKeys? Next { get; } = next;

    public override string ToString() => "rejoin keys [redacted]";

    public void Dispose()
    {
        Current.Dispose();
        Next?.Dispose();
    }
}
