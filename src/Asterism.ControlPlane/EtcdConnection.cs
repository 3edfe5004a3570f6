using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using dotnet_etcd;
using Grpc.Core;
using Grpc.Net.Client;

namespace Asterism.ControlPlane;

/// <summary>
/// A mutual-TLS connection to an etcd cluster through <c>dotnet-etcd</c>: one gRPC channel per endpoint, each presenting
/// the caller's client certificate and accepting only servers whose certificate chains to the cluster CA and names the
/// dialled address. Calls go to the last endpoint that answered and fail over on connection errors; every call has a
/// deadline, and a timeout or an etcd "no leader" / "request timed out" becomes <see cref="ControlPlaneError.NoQuorum"/>.
/// </summary>
public sealed class EtcdConnection : IDisposable
{
    private readonly Endpoint[] _endpoints;
    private readonly X509Certificate2 _clientCertificate;
    private readonly X509Certificate2 _ca;
    private readonly TimeProvider _time;
    private readonly bool _ownsCertificates;
    private int _preferred;

    /// <summary>Connects (lazily) to <paramref name="endpoints"/> with the client certificate and CA in <paramref name="tls"/>.</summary>
    public EtcdConnection(IEnumerable<Uri> endpoints, TlsFiles tls, TimeSpan? callTimeout = null, TimeProvider? time = null)
        : this(endpoints, tls.LoadCertificate(), tls.LoadCa(), callTimeout, time) => _ownsCertificates = true;

    /// <summary>Connects with an explicit client certificate (null: none, which etcd must refuse) and trust anchor.</summary>
    public EtcdConnection(IEnumerable<Uri> endpoints, X509Certificate2? clientCertificate, X509Certificate2 ca, TimeSpan? callTimeout = null, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(ca);
        _clientCertificate = clientCertificate!;
        _ca = ca;
        _time = time ?? TimeProvider.System;
        CallTimeout = callTimeout ?? TimeSpan.FromSeconds(5);
        _endpoints = [.. endpoints.Select(u => CreateEndpoint(u, clientCertificate, ca))];
        if (_endpoints.Length == 0)
        {
            throw new ArgumentException("at least one etcd endpoint is needed", nameof(endpoints));
        }
    }

    /// <summary>The deadline of each call; past it, the call counts as "no quorum" (its outcome is unknown).</summary>
    public TimeSpan CallTimeout { get; }

    /// <summary>The endpoints in order.</summary>
    public IReadOnlyList<Uri> Endpoints => [.. _endpoints.Select(e => e.Url)];

    /// <summary>
    /// Runs <paramref name="call"/> against an endpoint that accepts connections, with a deadline of
    /// <see cref="CallTimeout"/>. Connection failures move on to the next endpoint; when none answers, or the cluster
    /// cannot decide, the call fails with <see cref="ControlPlaneError.NoQuorum"/>.
    /// </summary>
    public async Task<T> CallAsync<T>(Func<EtcdClient, DateTime, CancellationToken, Task<T>> call, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(call);
        Exception? last = null;
        var start = Volatile.Read(ref _preferred);
        for (var i = 0; i < _endpoints.Length; i++)
        {
            var index = (start + i) % _endpoints.Length;
            try
            {
                var result = await call(_endpoints[index].Client, Deadline(), cancellationToken);
                Volatile.Write(ref _preferred, index);
                return result;
            }
            catch (RpcException e) when (IsConnectionFailure(e))
            {
                last = e;
            }
            catch (RpcException e) when (IsNoQuorum(e))
            {
                throw ControlPlaneException.NoQuorum(e);
            }
        }
        throw ControlPlaneException.NoQuorum(last);
    }

    /// <summary>Runs <paramref name="call"/> against one given client URL only (a member's own health or status).</summary>
    internal async Task<T> CallOneAsync<T>(Uri clientUrl, TimeSpan timeout, Func<EtcdClient, DateTime, CancellationToken, Task<T>> call, CancellationToken cancellationToken)
    {
        using var endpoint = CreateEndpoint(clientUrl, _clientCertificate, _ca);
        try
        {
            return await call(endpoint.Client, _time.GetUtcNow().UtcDateTime + timeout, cancellationToken);
        }
        catch (RpcException e) when (IsConnectionFailure(e) || IsNoQuorum(e))
        {
            throw ControlPlaneException.NoQuorum(e);
        }
    }

    private DateTime Deadline() => _time.GetUtcNow().UtcDateTime + CallTimeout;

    /// <summary>
    /// The endpoint never got the call: refused, reset, or the TLS handshake failed either way (the server refused our
    /// certificate, or we refused the server's; both end up here, so an impostor on one member's address only costs
    /// that endpoint).
    /// </summary>
    internal static bool IsConnectionFailure(RpcException e) =>
        e.StatusCode is StatusCode.Unavailable or StatusCode.Internal && HasTransportCause(e.Status.DebugException);

    private static bool HasTransportCause(Exception? e)
    {
        for (var depth = 0; e is not null && depth < 8; e = e.InnerException, depth++)
        {
            if (e is HttpRequestException or IOException or AuthenticationException or System.Net.Sockets.SocketException)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The cluster could not decide within the deadline (etcd's own words for that included).</summary>
    private static bool IsNoQuorum(RpcException e) =>
        e.StatusCode == StatusCode.DeadlineExceeded ||
        // etcd runs the request under the caller's deadline and reports its expiry as Unknown.
        (e.StatusCode == StatusCode.Unknown && e.Status.Detail.Contains("deadline exceeded", StringComparison.Ordinal)) ||
        (e.StatusCode == StatusCode.Unavailable &&
         (e.Status.Detail.Contains("no leader", StringComparison.Ordinal) ||
          e.Status.Detail.Contains("timed out", StringComparison.Ordinal) ||
          e.Status.Detail.Contains("leader changed", StringComparison.Ordinal) ||
          e.Status.Detail.Contains("not enough started members", StringComparison.Ordinal)));

    private static Endpoint CreateEndpoint(Uri url, X509Certificate2? clientCertificate, X509Certificate2 ca)
    {
        if (url.Scheme != Uri.UriSchemeHttps || !IPAddress.TryParse(url.IdnHost, out var address) || !IPAddress.IsLoopback(address))
        {
            throw new ArgumentException($"etcd endpoint {url} must be https on a loopback address");
        }
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromSeconds(2),
            EnableMultipleHttp2Connections = true,
            SslOptions = new SslClientAuthenticationOptions
            {
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                ClientCertificates = clientCertificate is null ? null : new X509CertificateCollection { clientCertificate },
                RemoteCertificateValidationCallback = (_, certificate, _, errors) => ValidateServer(certificate, errors, ca),
                // SslStream builds its own chain before the callback: without this it downloads a missing issuer from
                // the address the served certificate names (AiaFetchAttackTests).
                CertificateChainPolicy = ClusterApiTls.NoDownloadsPolicy(),
            },
        };
        var channel = GrpcChannel.ForAddress(url, new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            MaxReceiveMessageSize = 16 * 1024 * 1024,
        });
        return new Endpoint(url, channel, new EtcdClient(channel.CreateCallInvoker()));
    }

    /// <summary>
    /// The server must name the address we dialled (the TLS stack's name check) and chain to the cluster CA alone: the
    /// machine's trust store plays no part, and no issuer certificate is ever downloaded (a served certificate's AIA
    /// address would otherwise be dialled, off loopback) — <see cref="ClusterApiTls.ChainsTo"/>, shared with 6443.
    /// </summary>
    private static bool ValidateServer(X509Certificate? certificate, SslPolicyErrors errors, X509Certificate2 ca) =>
        (errors & (SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateNotAvailable)) == 0
        && ClusterApiTls.ChainsTo(certificate, ca, ClusterApiTls.ServerAuthOid);

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var e in _endpoints)
        {
            e.Dispose();
        }
        if (_ownsCertificates)
        {
            // Loaded from files by us: the private key object is ours to drop.
            _clientCertificate.Dispose();
            _ca.Dispose();
        }
    }

    private sealed record Endpoint(Uri Url, GrpcChannel Channel, EtcdClient Client) : IDisposable
    {
        public void Dispose()
        {
            Client.Dispose();
            Channel.Dispose();
        }
    }
}
