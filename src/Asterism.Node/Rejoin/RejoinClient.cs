using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Crypto;
using Asterism.Logging;
using Asterism.Node.Boot;
using Asterism.Node.Status;
using Asterism.Protocol;
using Asterism.Protocol.Join;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Rejoin;

/// <summary>
/// Asks every JoinService endpoint, round after round, for this disk's key (IssueRejoinTicket over client-attesting
/// aTLS) and offers each answer to the <see cref="KeyRace"/>; stops when the race is decided or it is cancelled.
/// </summary>
public sealed class RejoinClient(
    NodeOptions options,
    string diskUuid,
    IJoinEndpointSource endpoints,
    NodeAttestation attestation,
    KeyRace race,
    BootStatusTracker status,
    ILoggerFactory loggers,
    TimeProvider time)
{
    private readonly ILogger _log = loggers.CreateLogger(NodeLog.RejoinClient.Category);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        NodeLog.RejoinClient.Starting(_log);
        try
        {
            while (!cancellationToken.IsCancellationRequested && !race.IsDecided)
            {
                if (await RoundAsync(cancellationToken))
                {
                    return;
                }
                await Task.Delay(options.RejoinInterval, time, cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            NodeLog.RejoinClient.Stopped(_log);
        }
    }

    private async Task<bool> RoundAsync(CancellationToken cancellationToken)
    {
        IReadOnlyList<string> list;
        try
        {
            using var lookup = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            lookup.CancelAfter(options.RejoinTimeout);
            list = await endpoints.GetEndpointsAsync(lookup.Token);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            NodeLog.RejoinClient.FailedToGetEndpoints(_log, ex.Message);
            status.RejoinAttemptFailed("failed to get control-plane endpoints: " + ex.Message);
            return false;
        }
        NodeLog.RejoinClient.ReceivedEndpoints(_log, list);
        foreach (var endpoint in list)
        {
            if (cancellationToken.IsCancellationRequested || race.IsDecided)
            {
                return true;
            }
            NodeLog.RejoinClient.RequestingTicket(_log, endpoint);
            string error;
            try
            {
                var keys = await RequestAsync(endpoint, cancellationToken);
                var verdict = await race.OfferAsync(keys, cancellationToken);
                if (verdict is KeyVerdict.Accepted or KeyVerdict.AlreadyRecovered)
                {
                    if (verdict == KeyVerdict.Accepted)
                    {
                        NodeLog.RejoinClient.RetrievedTicket(_log);
                    }
                    return true;
                }
                error = verdict switch
                {
                    KeyVerdict.DiskKeyRejected => "received state disk key does not open this disk",
                    KeyVerdict.StoreUnreadable => "state disk opens but its node state is unreadable",
                    _ => "received measurement secret does not match this cluster",
                };
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                error = RpcErrors.Describe(ex);
            }
            NodeLog.RejoinClient.FailedOnEndpoint(_log, error, endpoint);
            status.RejoinAttemptFailed($"{endpoint}: {error}");
        }
        if (!cancellationToken.IsCancellationRequested)
        {
            NodeLog.RejoinClient.FailedOnAllEndpoints(_log);
        }
        return false;
    }

    private async Task<ReceivedKeys> RequestAsync(string endpoint, CancellationToken cancellationToken)
    {
        using var call = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        call.CancelAfter(options.RejoinTimeout);
        using var connection = await JoinServiceConnection.OpenAsync(endpoint, attestation, options.RejoinTimeout, loggers, cancellationToken);
        var response = await connection.Client.IssueRejoinTicketAsync(new IssueRejoinTicketRequest { DiskUuid = diskUuid }, cancellationToken: call.Token);
        if (response.StateDiskKey.Length != KeyDerivation.KeyLength || response.MeasurementSecret.Length != KeyDerivation.KeyLength)
        {
            throw new InvalidDataException("rejoin ticket has keys of the wrong length");
        }
        try
        {
            return new ReceivedKeys(SecretBytes.CopyOf(response.StateDiskKey.Span), SecretBytes.CopyOf(response.MeasurementSecret.Span), "rejoin");
        }
        finally
        {
            SecretFields.Zero(response.StateDiskKey, response.MeasurementSecret);
        }
    }
}
