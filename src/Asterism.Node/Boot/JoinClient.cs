using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Crypto;
using Asterism.JoinService;
using Asterism.Logging;
using Asterism.Node.Tickets;
using Asterism.Protocol;
using Asterism.Protocol.Join;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Boot;

/// <summary>
/// First boot of every node but the one the CLI initializes: asks the JoinService endpoints, round after round
/// (<see cref="TicketRounds"/>), for a join ticket and applies the first one.
/// </summary>
public sealed class JoinClient(
    NodeOptions options,
    string diskUuid,
    TicketRounds rounds,
    ITicketClient tickets,
    FirstBootSetup setup,
    ILoggerFactory loggers) : ITicketRequester<FirstBootKeys>
{
    private readonly ILogger _log = loggers.CreateLogger(NodeLog.JoinClient.Category);

    public Task RunAsync(CancellationToken cancellationToken) => rounds.RunAsync(this, cancellationToken);

    bool ITicketRequester<FirstBootKeys>.IsSettled => setup.IsDone;

    async Task<FirstBootKeys> ITicketRequester<FirstBootKeys>.RequestAsync(string endpoint, CancellationToken cancellationToken)
    {
        NodeLog.JoinClient.RequestingTicket(_log, endpoint);
        var isControlPlane = options.Role == NodeRole.ControlPlane;
        var response = await tickets.IssueJoinTicketAsync(endpoint,
            new IssueJoinTicketRequest { DiskUuid = diskUuid, IsControlPlane = isControlPlane, NodeName = options.Name },
            cancellationToken);
        try
        {
            return ToKeys(response, isControlPlane);
        }
        finally
        {
            SecretFields.Zero(response.StateDiskKey, response.MeasurementSecret, response.MasterKey, response.MasterSalt, response.EtcdCaKey);
        }
    }

    async Task<string?> ITicketRequester<FirstBootKeys>.ApplyAsync(string endpoint, FirstBootKeys ticket, CancellationToken cancellationToken)
    {
        using (ticket)
        {
            if (await setup.ApplyAsync(ticket, "join", cancellationToken) is not null)
            {
                NodeLog.JoinClient.Joined(_log, endpoint);
            }
            return null;
        }
    }

    void ITicketRequester<FirstBootKeys>.LookupFailed(string error) =>
        NodeLog.JoinClient.FailedToGetEndpoints(_log, error);

    void ITicketRequester<FirstBootKeys>.EndpointsListed(IReadOnlyList<string> endpoints)
    {
    }

    void ITicketRequester<FirstBootKeys>.EndpointFailed(string endpoint, string error) =>
        NodeLog.JoinClient.FailedOnEndpoint(_log, error, endpoint);

    void ITicketRequester<FirstBootKeys>.RoundFailed()
    {
    }

    private const int MaxPemLength = 16 * 1024;

    private static FirstBootKeys ToKeys(IssueJoinTicketResponse response, bool isControlPlane)
    {
        if (response.StateDiskKey.Length != KeyDerivation.KeyLength || response.MeasurementSecret.Length != KeyDerivation.KeyLength
            || response.MeasurementSalt.Length != KeyDerivation.MeasurementSaltLength)
        {
            throw new InvalidDataException("join ticket has keys of the wrong length");
        }
        // The ticket's disk key is of the cluster's current generation (0: a server from before rotation = 1); from
        // generation 2 on the node state must keep that generation's key check, or a later recovery with the current
        // master secret would fail the measurement-secret check.
        var generation = response.KeyGeneration == 0 ? 1 : response.KeyGeneration;
        if (generation > KeyDerivation.MaxGeneration)
        {
            throw new InvalidDataException("join ticket names an impossible key generation");
        }
        if (generation > 1 && response.KeyCheck.Length != KeyDerivation.KeyLength)
        {
            throw new InvalidDataException("join ticket of a rotated cluster lacks its key check");
        }
        ClusterSecrets? secrets = null;
        if (isControlPlane)
        {
            if (response.EtcdCaKey.IsEmpty || response.EtcdCaCertificate.IsEmpty || response.EtcdInitialCluster.Count == 0
                || response.EtcdCaKey.Length > MaxPemLength || response.EtcdCaCertificate.Length > MaxPemLength)
            {
                // Every JoinService hands a control plane the cluster CA and its etcd membership; without them it
                // could never run its member.
                throw new InvalidDataException("join ticket lacks the cluster CA or the etcd membership");
            }
            try
            {
                var policy = AttestationPolicy.FromJson(response.AttestationConfig.Span);
                policy.EnsureUsable();
                // measurement_secret stays generation 1's (it derives the cluster ID); the master secret is the
                // ticket's generation, so after a rotation the cluster measurement secret cannot be derived from it.
                secrets = new ClusterSecrets(
                    MasterSecret.FromBytes(response.MasterKey.Span, response.MasterSalt.Span),
                    (int)generation,
                    generation == 1 ? null : SecretBytes.CopyOf(response.MeasurementSecret.Span),
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
            KeyGeneration = (int)generation,
            KeyCheck = generation == 1 ? null : response.KeyCheck.ToByteArray(),
            ClusterSecrets = secrets,
            EtcdCaKey = isControlPlane ? SecretBytes.CopyOf(response.EtcdCaKey.Span) : null,
            EtcdCaCertificate = isControlPlane ? response.EtcdCaCertificate.ToByteArray() : null,
            EtcdInitialCluster = isControlPlane ? [.. response.EtcdInitialCluster] : [],
        };
    }
}
