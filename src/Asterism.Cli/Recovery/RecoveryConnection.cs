using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Protocol.Recover;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace Asterism.Cli.Recovery;

/// <summary>
/// One recover call's connection, the same for a real push and for the dry run's probe: server-attesting aTLS whose
/// peer the validator checks before a byte of the call is sent, handshake and validation bounded by the call's time
/// limit, and responses capped at 64 KiB (a node answers with a few names).
/// </summary>
internal sealed class RecoveryConnection : IDisposable
{
    private readonly SocketsHttpHandler _handler;
    private readonly GrpcChannel _channel;

    public RecoveryConnection(string endpoint, IAttestationValidator validator, TimeSpan callTimeout, ILoggerFactory loggers)
    {
        _handler = AtlsClient.CreateHandler(validator, new AtlsClientOptions
        {
            HandshakeTimeout = callTimeout,
            ValidationTimeout = callTimeout,
            OnValidated = peer => Attested = peer,
            LoggerFactory = loggers,
        });
        _channel = GrpcChannel.ForAddress($"https://{endpoint}", new GrpcChannelOptions
        {
            HttpHandler = _handler,
            DisposeHttpClient = false,
            MaxReceiveMessageSize = 64 * 1024,
        });
        Client = new API.APIClient(_channel);
    }

    /// <summary>The attested peer once the handshake validated it; null before (or when it never did).</summary>
    public AtlsPeer? Attested { get; private set; }

    /// <summary>The recoverproto client over this connection.</summary>
    public API.APIClient Client { get; }

    public void Dispose()
    {
        _channel.Dispose();
        _handler.Dispose();
    }
}
