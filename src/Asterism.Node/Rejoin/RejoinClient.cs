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
    ILoggerFactory loggers) : ITicketRequester<ReceivedKeys>
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

    bool ITicketRequester<ReceivedKeys>.IsSettled => race.IsDecided;

    async Task<ReceivedKeys> ITicketRequester<ReceivedKeys>.RequestAsync(string endpoint, CancellationToken cancellationToken)
    {
        NodeLog.RejoinClient.RequestingTicket(_log, endpoint);
        var response = await tickets.IssueRejoinTicketAsync(endpoint, new IssueRejoinTicketRequest { DiskUuid = diskUuid }, cancellationToken);
        try
        {
            if (response.StateDiskKey.Length != KeyDerivation.KeyLength || response.MeasurementSecret.Length != KeyDerivation.KeyLength)
            {
                throw new InvalidDataException("rejoin ticket has keys of the wrong length");
            }
            return new ReceivedKeys(SecretBytes.CopyOf(response.StateDiskKey.Span), SecretBytes.CopyOf(response.MeasurementSecret.Span), "rejoin");
        }
        finally
        {
            SecretFields.Zero(response.StateDiskKey, response.MeasurementSecret);
        }
    }

    async Task<string?> ITicketRequester<ReceivedKeys>.ApplyAsync(string endpoint, ReceivedKeys ticket, CancellationToken cancellationToken)
    {
        var verdict = await race.OfferAsync(ticket, cancellationToken);
        if (verdict == KeyVerdict.Accepted)
        {
            NodeLog.RejoinClient.RetrievedTicket(_log);
        }
        return verdict is KeyVerdict.Accepted or KeyVerdict.AlreadyRecovered ? null : verdict.ToStatus().Detail;
    }

    void ITicketRequester<ReceivedKeys>.LookupFailed(string error)
    {
        NodeLog.RejoinClient.FailedToGetEndpoints(_log, error);
        status.RejoinAttemptFailed("failed to get control-plane endpoints: " + error);
    }

    void ITicketRequester<ReceivedKeys>.EndpointsListed(IReadOnlyList<string> endpoints) =>
        NodeLog.RejoinClient.ReceivedEndpoints(_log, endpoints);

    void ITicketRequester<ReceivedKeys>.EndpointFailed(string endpoint, string error)
    {
        NodeLog.RejoinClient.FailedOnEndpoint(_log, error, endpoint);
        status.RejoinAttemptFailed($"{endpoint}: {error}");
    }

    void ITicketRequester<ReceivedKeys>.RoundFailed() => NodeLog.RejoinClient.FailedOnAllEndpoints(_log);
}
