using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Asterism.ControlPlane;
using Asterism.Protocol.ClusterApi;
using Grpc.Core;
using Grpc.Net.Client;

namespace Asterism.Cli;

/// <summary>
/// The CLI's side of the cluster API (port 6443 through the provider's load balancer): mutual TLS with the workspace's
/// admin credential; the server must chain to the cluster CA alone and allow serverAuth. The load balancer's address is
/// not in any node's certificate, so the name is not checked: any server certificate of the cluster CA belongs to a
/// control plane (only control planes hold the CA key). Failures become one-line <see cref="CliError"/>s.
/// </summary>
public sealed class ClusterApiClient : IDisposable
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(15);
    private readonly GrpcChannel _channel;

    /// <summary>Connects (lazily) with <paramref name="credential"/>, which the caller keeps owning.</summary>
    public ClusterApiClient(AdminCredential credential, TimeSpan? connectTimeout = null)
    {
        ArgumentNullException.ThrowIfNull(credential);
        Server = credential.Server;
        var ca = credential.Ca;
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = connectTimeout ?? TimeSpan.FromSeconds(2),
            SslOptions = new SslClientAuthenticationOptions
            {
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                ClientCertificates = new X509CertificateCollection { credential.Client },
                RemoteCertificateValidationCallback = (_, certificate, _, _) => ClusterApiTls.ChainsTo(certificate, ca, ClusterApiTls.ServerAuthOid),
                CertificateChainPolicy = ClusterApiTls.NoDownloadsPolicy(),
            },
        };
        _channel = GrpcChannel.ForAddress($"https://{credential.Server}", new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            MaxReceiveMessageSize = 64 * 1024,
        });
        Api = new ClusterApi.ClusterApiClient(_channel);
    }

    /// <summary>"ADDRESS:PORT" dialled.</summary>
    public string Server { get; }

    /// <summary>The generated client, for callers that handle <see cref="RpcException"/> themselves.</summary>
    public ClusterApi.ClusterApiClient Api { get; }

    /// <summary>A deadline for one call.</summary>
    public static DateTime Deadline() => DateTime.UtcNow + CallTimeout;

    /// <summary>Runs one call; its failures become one clear line.</summary>
    public async Task<T> CallAsync<T>(Func<ClusterApi.ClusterApiClient, Task<T>> call)
    {
        ArgumentNullException.ThrowIfNull(call);
        try
        {
            return await call(Api);
        }
        catch (RpcException e)
        {
            throw ToCliError(e);
        }
    }

    /// <summary>One line for a failed call: unreachable, refused, or the server's own message.</summary>
    public CliError ToCliError(RpcException e) => e.StatusCode switch
    {
        StatusCode.Unavailable when e.Status.Detail == ControlPlaneException.NoQuorumMessage =>
            new CliError($"{ControlPlaneException.NoQuorumMessage} (cluster API at {Server}); run 'asterism status', and 'asterism recover' if control planes wait for keys"),
        StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Internal when e.Status.DebugException is not null =>
            new CliError($"cluster API at {Server} is unreachable ({Reason(e)}); is the cluster running? see 'asterism status'"),
        StatusCode.DeadlineExceeded => new CliError($"cluster API at {Server} did not answer in time"),
        StatusCode.PermissionDenied or StatusCode.Unauthenticated => new CliError($"cluster API at {Server} refused the workspace's admin credential: {e.Status.Detail}"),
        _ => new CliError(e.Status.Detail.Length > 0 ? e.Status.Detail : $"cluster API call failed: {e.StatusCode}"),
    };

    private static string Reason(RpcException e)
    {
        for (var inner = e.Status.DebugException; inner is not null; inner = inner.InnerException)
        {
            if (inner is System.Net.Sockets.SocketException socket)
            {
                return socket.SocketErrorCode == System.Net.Sockets.SocketError.ConnectionRefused ? "connection refused" : socket.Message;
            }
            if (inner is AuthenticationException)
            {
                return "TLS handshake failed";
            }
        }
        return e.Status.Detail;
    }

    /// <inheritdoc />
    public void Dispose() => _channel.Dispose();
}
