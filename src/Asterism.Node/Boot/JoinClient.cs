using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Crypto;
using Asterism.JoinService;
using Asterism.Logging;
using Asterism.Node.Rejoin;
using Asterism.Protocol;
using Asterism.Protocol.Join;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Boot;

/// <summary>
/// First boot of every node but the one the CLI initializes: asks the JoinService endpoints, round after round, for
/// a join ticket (client-attesting aTLS) and applies the first one.
/// </summary>
public sealed class JoinClient(
    NodeOptions options,
    string diskUuid,
    IJoinEndpointSource endpoints,
    NodeAttestation attestation,
    FirstBootSetup setup,
    ILoggerFactory loggers,
    TimeProvider time)
{
    private readonly ILogger _log = loggers.CreateLogger(NodeLog.JoinClient.Category);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested && !setup.IsDone)
            {
                IReadOnlyList<string> list = [];
                try
                {
                    list = await endpoints.GetEndpointsAsync(cancellationToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    NodeLog.JoinClient.FailedToGetEndpoints(_log, ex.Message);
                }
                foreach (var endpoint in list)
                {
                    if (setup.IsDone || cancellationToken.IsCancellationRequested)
                    {
                        return;
                    }
                    try
                    {
                        NodeLog.JoinClient.RequestingTicket(_log, endpoint);
                        using var keys = await RequestAsync(endpoint, cancellationToken);
                        if (await setup.ApplyAsync(keys, "join", cancellationToken) is not null)
                        {
                            NodeLog.JoinClient.Joined(_log, endpoint);
                        }
                        return;
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                    {
                        var error = RpcErrors.Describe(ex);
                        NodeLog.JoinClient.FailedOnEndpoint(_log, error, endpoint);
                    }
                }
                await Task.Delay(options.RejoinInterval, time, cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task<FirstBootKeys> RequestAsync(string endpoint, CancellationToken cancellationToken)
    {
        using var call = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        call.CancelAfter(options.RejoinTimeout);
        using var connection = await JoinServiceConnection.OpenAsync(endpoint, attestation, options.RejoinTimeout, loggers, cancellationToken);
        var isControlPlane = options.Role == NodeRole.ControlPlane;
        var response = await connection.Client.IssueJoinTicketAsync(
            new IssueJoinTicketRequest { DiskUuid = diskUuid, IsControlPlane = isControlPlane, NodeName = options.Name },
            cancellationToken: call.Token);
        try
        {
            return ToKeys(response, isControlPlane);
        }
        finally
        {
            SecretFields.Zero(response.StateDiskKey, response.MeasurementSecret, response.MasterKey, response.MasterSalt);
        }
    }

    private static FirstBootKeys ToKeys(IssueJoinTicketResponse response, bool isControlPlane)
    {
        if (response.StateDiskKey.Length != 32 || response.MeasurementSecret.Length != 32 || response.MeasurementSalt.Length != 32)
        {
            throw new InvalidDataException("join ticket has keys of the wrong length");
        }
        ClusterSecrets? secrets = null;
        if (isControlPlane)
        {
            try
            {
                var policy = AttestationPolicy.FromJson(response.AttestationConfig.Span);
                policy.EnsureUsable();
                secrets = new ClusterSecrets(
                    MasterSecret.FromBytes(response.MasterKey.Span, response.MasterSalt.Span),
                    response.MeasurementSalt.ToByteArray(),
                    policy);
            }
            catch (Exception ex) when (ex is MasterSecretException or MeasurementsFormatException)
            {
                throw new InvalidDataException("join ticket lacks valid control-plane secrets");
            }
        }
        return new FirstBootKeys
        {
            DiskKey = SecretBytes.CopyOf(response.StateDiskKey.Span),
            MeasurementSecret = SecretBytes.CopyOf(response.MeasurementSecret.Span),
            MeasurementSalt = response.MeasurementSalt.ToByteArray(),
            ClusterSecrets = secrets,
        };
    }
}
