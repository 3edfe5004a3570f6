using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Node.Services;
using Asterism.Protocol.Join;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Tickets;

/// <summary>
/// One fresh mutual-aTLS connection to a JoinService endpoint: this node proves itself, and the JoinService proves it
/// is a certified, serving control plane of this node's cluster (Constellation checks only the node's side).
/// </summary>
public sealed class JoinServiceConnection : IDisposable
{
    private readonly SocketsHttpHandler _handler;
    private readonly GrpcChannel _channel;

    /// <summary>
    /// A mutual-aTLS connection to <paramref name="endpoint"/>: this node attests with <paramref name="attestation"/>,
    /// and the JoinService must pass <see cref="JoinServiceTrust"/> (certified control plane of this node's provider,
    /// this node's boot PCRs, PCR 15 ≠ 0) before any request is sent.
    /// </summary>
    public static async Task<JoinServiceConnection> OpenAsync(string endpoint, NodeAttestation attestation, TimeSpan timeout, ILoggerFactory loggers, TimeProvider time, CancellationToken cancellationToken)
    {
        var validator = await attestation.JoinServiceValidatorAsync(loggers, cancellationToken);
        return new JoinServiceConnection(endpoint, attestation.Issuer, validator, timeout, loggers, time);
    }

    private JoinServiceConnection(string endpoint, IAttestationIssuer issuer, IAttestationValidator joinService, TimeSpan timeout, ILoggerFactory loggers, TimeProvider time)
    {
        _handler = AtlsClient.CreateMutualHandler(issuer, joinService, new AtlsClientOptions { HandshakeTimeout = timeout, ValidationTimeout = timeout, LoggerFactory = loggers, TimeProvider = time });
        _channel = GrpcChannel.ForAddress($"https://{endpoint}", new GrpcChannelOptions
        {
            HttpHandler = _handler,
            DisposeHttpClient = false,
            MaxReceiveMessageSize = Listeners.MaxMessageSize,
        });
        Client = new API.APIClient(_channel);
        RotationClient = new global::Asterism.Protocol.Join.Rotation.RotationClient(_channel);
    }

    public API.APIClient Client { get; }

    /// <summary>join.Rotation on the same connection (a control plane's rotation listener, <see cref="Protocol.Ports.Rotation"/>).</summary>
    public global::Asterism.Protocol.Join.Rotation.RotationClient RotationClient { get; }

    public void Dispose()
    {
        _channel.Dispose();
        _handler.Dispose();
    }
}
