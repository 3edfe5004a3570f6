using Asterism.Atls;
using Asterism.Attestation;
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

    public JoinServiceConnection(string endpoint, IAttestationIssuer issuer, TimeSpan timeout, ILoggerFactory loggers)
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
