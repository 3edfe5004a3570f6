using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Crypto;
using Asterism.Logging;
using Asterism.Node.BootProgress;
using Asterism.Node.Tickets;
using Asterism.Node.Unlock;
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
    private readonly ILogger _log = loggers.CreateLogger("rejoinClient");

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        _log.Info("Starting RejoinClient");
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
            _log.Info("RejoinClient stopped");
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
            _log.Error("Failed to get control-plane endpoints", [Field.Of("error", ex.Message)]);
            status.RejoinAttemptFailed("failed to get control-plane endpoints: " + ex.Message);
            return false;
        }
        _log.Info("Received list with JoinService endpoints", [Field.Of("endpoints", list)]);
        foreach (var endpoint in list)
        {
            if (cancellationToken.IsCancellationRequested || race.IsDecided)
            {
                return true;
            }
            _log.Info("Requesting rejoin ticket", [Field.Of("endpoint", endpoint)]);
            string error;
            try
            {
                var keys = await RequestAsync(endpoint, cancellationToken);
                var verdict = await race.OfferAsync(keys, cancellationToken);
                if (verdict is KeyVerdict.Accepted or KeyVerdict.AlreadyRecovered)
                {
                    if (verdict == KeyVerdict.Accepted)
                    {
                        _log.Info("Successfully retrieved rejoin ticket");
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
            _log.Warn("Failed to rejoin on endpoint", [Field.Of("error", error), Field.Of("endpoint", endpoint)]);
            status.RejoinAttemptFailed($"{endpoint}: {error}");
        }
        if (!cancellationToken.IsCancellationRequested)
        {
            _log.Error("Failed to rejoin on all endpoints");
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
