using System.Net;
using System.Net.Http;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Asterism.Attestation;
using Microsoft.Extensions.Logging;

namespace Asterism.Atls;

/// <summary>
/// HttpMessageHandlers for aTLS clients, usable with <c>GrpcChannel.ForAddress("https://HOST:PORT", new GrpcChannelOptions { HttpHandler = ... })</c>.
/// Each new connection dials the real address itself and runs its own TLS 1.3 handshake in the
/// <see cref="SocketsHttpHandler.ConnectCallback"/>; the handler sends a request only on connections that passed.
/// </summary>
public static class AtlsClient
{
    private static readonly List<SslApplicationProtocol> Alpn = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11];

    /// <inheritdoc cref="CreateHandler(AttestationValidatorSet, AtlsClientOptions?)"/>
    public static SocketsHttpHandler CreateHandler(IAttestationValidator validator, AtlsClientOptions? options = null) =>
        CreateHandler(new AttestationValidatorSet(validator), options);

    /// <summary>
    /// Server attests: a fresh 32-byte nonce per connection travels as the TLS server name; the server's certificate
    /// must carry a document for one of <paramref name="validators"/>' variants bound to that nonce and to the
    /// certificate key. Refused connections fail with <see cref="AtlsRefusedException"/> before any request is sent.
    /// </summary>
    public static SocketsHttpHandler CreateHandler(AttestationValidatorSet validators, AtlsClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(validators);
        options ??= new AtlsClientOptions();
        var logger = AtlsListenOptionsExtensions.Logger(options.LoggerFactory);
        var verifier = new AtlsCertificateVerifier(validators, options.ValidationTimeout, options.TimeProvider);
        return NewHandler(options, async (endpoint, stream, cancellationToken) =>
        {
            var nonce = AtlsNonce.Create();
            var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = AtlsNonce.ToServerName(nonce),
                ApplicationProtocols = Alpn,
                EnabledSslProtocols = SslProtocols.Tls13,
                // No session can ever be resumed: the server name (the session cache key) is a fresh nonce and aTLS
                // servers issue no tickets. Allowing it only lets .NET reuse its client SSL_CTX (~0.3-0.5 ms each).
                // Were a session resumed anyway, the old certificate's document would fail the nonce check.
                AllowTlsResume = true,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                // The attestation document, checked below before the stream is handed out, decides trust.
                RemoteCertificateValidationCallback = static (_, certificate, _, _) => certificate is not null,
            }, cancellationToken).ConfigureAwait(false);
            var certificate = ssl.RemoteCertificate as X509Certificate2;
            var (verdict, variant) = await verifier.VerifyAsync(certificate, nonce, cancellationToken).ConfigureAwait(false);
            AtlsLog.Report(logger, "server", variant, verdict, endpoint);
            if (!verdict.Accepted)
            {
                await ssl.DisposeAsync().ConfigureAwait(false);
                throw new AtlsRefusedException(verdict.Failure, $"aTLS: server attestation refused ({verdict.Failure}): {verdict.Message}");
            }
            options.OnValidated?.Invoke(new AtlsPeer(verdict.Facts!, verdict.Warnings, endpoint));
            return ssl;
        });
    }

    /// <summary>
    /// Client attests: the server's nonce arrives as the only acceptable CA name of its CertificateRequest; this handler
    /// answers with a fresh per-connection certificate carrying <paramref name="issuer"/>'s document bound to that
    /// nonce and to the certificate key. The server's own certificate is not checked (as in Constellation's rejoin).
    /// </summary>
    public static SocketsHttpHandler CreateAttestingHandler(IAttestationIssuer issuer, AtlsClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(issuer);
        options ??= new AtlsClientOptions();
        var logger = AtlsListenOptionsExtensions.Logger(options.LoggerFactory);
        var time = options.TimeProvider;
        return NewHandler(options, async (endpoint, stream, cancellationToken) =>
        {
            string? problem = null;
            var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
            var sslOptions = new SslClientAuthenticationOptions
            {
                TargetHost = "asterism-atls",
                ApplicationProtocols = Alpn,
                EnabledSslProtocols = SslProtocols.Tls13,
                AllowTlsResume = false,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = static (_, certificate, _, _) => certificate is not null,
                LocalCertificateSelectionCallback = (_, _, _, remoteCertificate, acceptableIssuers) =>
                {
                    // On Linux the callback runs once before the handshake (no server certificate yet) and again
                    // when the CertificateRequest arrives with its CA names; only the second call can attest.
                    if (remoteCertificate is null)
                    {
                        return null!;
                    }
                    if (!AtlsNonce.TryParseAuthorities(acceptableIssuers, out var nonce))
                    {
                        problem = "the server's certificate request carries no aTLS nonce";
                        return null!;
                    }
                    // The callback is synchronous; the simulated issuer completes inline, a TPM quote takes ~1 ms.
                    return AtlsCertificate.CreateAsync(issuer, nonce, time.GetUtcNow(), cancellationToken).AsTask().GetAwaiter().GetResult();
                },
            };
            try
            {
                await ssl.AuthenticateAsClientAsync(sslOptions, cancellationToken).ConfigureAwait(false);
            }
            catch (AuthenticationException) when (problem is not null)
            {
                AtlsLog.HandshakeRefused(logger, "NoNonce", endpoint, problem);
                await ssl.DisposeAsync().ConfigureAwait(false);
                throw new AtlsRefusedException(AttestationFailure.MissingExtension, "aTLS: " + problem);
            }
            if (problem is not null || ssl.LocalCertificate is null)
            {
                AtlsLog.HandshakeRefused(logger, "NoNonce", endpoint, problem ?? "the server did not request a client certificate");
                await ssl.DisposeAsync().ConfigureAwait(false);
                throw new AtlsRefusedException(AttestationFailure.MissingExtension, "aTLS: " + (problem ?? "the server did not ask this client to attest"));
            }
            return ssl;
        });
    }

    private static SocketsHttpHandler NewHandler(AtlsClientOptions options, Func<string, Stream, CancellationToken, Task<SslStream>> secure)
    {
        var logger = AtlsListenOptionsExtensions.Logger(options.LoggerFactory);
        var handshakeTimeout = options.HandshakeTimeout;
        var time = options.TimeProvider;
        return new SocketsHttpHandler
        {
            // Our own limit (below) fires first so a slow peer is reported as an aTLS Timeout.
            ConnectTimeout = handshakeTimeout + TimeSpan.FromSeconds(5),
            ConnectCallback = async (context, cancellationToken) =>
            {
                var endpoint = $"{context.DnsEndPoint.Host}:{context.DnsEndPoint.Port}";
                using var timeout = new CancellationTokenSource(handshakeTimeout, time);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    await socket.ConnectAsync(context.DnsEndPoint, linked.Token).ConfigureAwait(false);
                    return await secure(endpoint, new NetworkStream(socket, ownsSocket: true), linked.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                {
                    socket.Dispose();
                    AtlsLog.HandshakeFailed(logger, endpoint, $"timed out after {handshakeTimeout.TotalSeconds:0.###} s");
                    throw new AtlsRefusedException(AttestationFailure.Timeout, $"aTLS: handshake with {endpoint} timed out");
                }
                catch (Exception e) when (e is not AtlsRefusedException)
                {
                    socket.Dispose();
                    if (e is AuthenticationException or IOException)
                    {
                        AtlsLog.HandshakeFailed(logger, endpoint, e.Message);
                    }
                    throw;
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
    }
}
