using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Node.Boot;
using Asterism.Node.Services;
using Asterism.Protocol.Join;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Rejoin;

/// <summary>
/// One fresh client-attesting aTLS connection to a JoinService endpoint (this node proves itself; the
/// JoinService's certificate is not attested, as in Constellation: a wrong key only fails to open the disk).
/// </summary>
public sealed class JoinServiceConnection : IDisposable
{
    private readonly SocketsHttpHandler _handler;
    private readonly GrpcChannel _channel;

    /// <summary>A connection to <paramref name="endpoint"/> on which this node attests with <paramref name="attestation"/>.</summary>
    public static Task<JoinServiceConnection> OpenAsync(string endpoint, NodeAttestation attestation, TimeSpan timeout, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(new JoinServiceConnection(endpoint, attestation.Issuer, timeout, loggers));
    }

    private JoinServiceConnection(string endpoint, IAttestationIssuer issuer, TimeSpan timeout, ILoggerFactory loggers)
    {
        _handler = AtlsClient.CreateAttestingHandler(issuer, new AtlsClientOptions { HandshakeTimeout = timeout, ValidationTimeout = timeout, LoggerFactory = loggers });
        _channel = GrpcChannel.ForAddress($"https://{endpoint}", new GrpcChannelOptions
        {
            HttpHandler = _handler,
            DisposeHttpClient = false,
            MaxReceiveMessageSize = Listeners.MaxMessageSize,
        });
        Client = new API.APIClient(_channel);
    }

    public API.APIClient Client { get; }

    public void Dispose()
    {
        _channel.Dispose();
        _handler.Dispose();
    }
}
