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
                CertificateChainPolicy = AtlsChainPolicy.NoDownloads(),
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
    /// nonce and to the certificate key. The server's own certificate is not checked (as in Constellation's rejoin):
    /// use <see cref="CreateMutualHandler(IAttestationIssuer, AttestationValidatorSet, AtlsClientOptions?)"/> where the
    /// server must prove itself too.
    /// </summary>
    public static SocketsHttpHandler CreateAttestingHandler(IAttestationIssuer issuer, AtlsClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(issuer);
        options ??= new AtlsClientOptions();
        var logger = AtlsListenOptionsExtensions.Logger(options.LoggerFactory);
        var time = options.TimeProvider;
        return NewHandler(options, async (endpoint, stream, cancellationToken) =>
        {
            var attestation = new ClientAttestation(issuer, time, cancellationToken);
            var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
            var sslOptions = AttestingOptions("asterism-atls", allowResume: false, attestation);
            try
            {
                await ssl.AuthenticateAsClientAsync(sslOptions, cancellationToken).ConfigureAwait(false);
            }
            catch (AuthenticationException) when (attestation.Problem is not null)
            {
                var refusal = attestation.Refusal(logger, endpoint, ssl);
                await ssl.DisposeAsync().ConfigureAwait(false);
                throw refusal;
            }
            if (attestation.Problem is not null || ssl.LocalCertificate is null)
            {
                var refusal = attestation.Refusal(logger, endpoint, ssl);
                await ssl.DisposeAsync().ConfigureAwait(false);
                throw refusal;
            }
            return ssl;
        });
    }

    /// <summary>
    /// TLS 1.3 client options for a connection on which this client attests: the certificate is chosen (and the
    /// document issued) by <paramref name="attestation"/> once the server's CertificateRequest names its nonce; the
    /// server's certificate is judged elsewhere (not at all in client-attests mode, by the server check in mutual mode).
    /// </summary>
    private static SslClientAuthenticationOptions AttestingOptions(string targetHost, bool allowResume, ClientAttestation attestation) => new()
    {
        TargetHost = targetHost,
        ApplicationProtocols = Alpn,
        EnabledSslProtocols = SslProtocols.Tls13,
        AllowTlsResume = allowResume,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        RemoteCertificateValidationCallback = static (_, certificate, _, _) => certificate is not null,
        CertificateChainPolicy = AtlsChainPolicy.NoDownloads(),
        LocalCertificateSelectionCallback = (_, _, _, remoteCertificate, acceptableIssuers) => attestation.Select(remoteCertificate, acceptableIssuers),
    };

    /// <inheritdoc cref="CreateMutualHandler(IAttestationIssuer, AttestationValidatorSet, AtlsClientOptions?)"/>
    public static SocketsHttpHandler CreateMutualHandler(IAttestationIssuer issuer, IAttestationValidator serverValidator, AtlsClientOptions? options = null) =>
        CreateMutualHandler(issuer, new AttestationValidatorSet(serverValidator), options);

    /// <summary>
    /// Both ends attest in one TLS 1.3 handshake (server side: <c>UseAtlsMutual</c>). A fresh nonce per connection
    /// travels as the TLS server name; the server's certificate must carry a document for one of
    /// <paramref name="serverValidators"/>' variants bound to it and to the certificate key. Only once the server is
    /// accepted does this client attest itself, with <paramref name="issuer"/>, for the nonce the server sent as its
    /// CertificateRequest's CA name: a server that fails validation gets neither a document nor a request
    /// (<see cref="AtlsRefusedException"/>). <see cref="AtlsClientOptions.OnValidated"/> receives the server peer.
    /// </summary>
    public static SocketsHttpHandler CreateMutualHandler(IAttestationIssuer issuer, AttestationValidatorSet serverValidators, AtlsClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(issuer);
        ArgumentNullException.ThrowIfNull(serverValidators);
        options ??= new AtlsClientOptions();
        var logger = AtlsListenOptionsExtensions.Logger(options.LoggerFactory);
        var verifier = new AtlsCertificateVerifier(serverValidators, options.ValidationTimeout, options.TimeProvider);
        var time = options.TimeProvider;
        return NewHandler(options, async (endpoint, stream, cancellationToken) =>
        {
            var nonce = AtlsNonce.Create();
            var server = new ServerCheck(verifier, nonce, cancellationToken);
            var attestation = new ClientAttestation(issuer, time, cancellationToken, server);
            var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
            // As in CreateHandler: the server name is a fresh nonce, so no session is ever found to resume.
            var sslOptions = AttestingOptions(AtlsNonce.ToServerName(nonce), allowResume: true, attestation);
            try
            {
                await ssl.AuthenticateAsClientAsync(sslOptions, cancellationToken).ConfigureAwait(false);
            }
            catch (AuthenticationException) when (server.Verdict is { Accepted: false } || attestation.Problem is not null)
            {
                var refusal = server.Verdict is { Accepted: false } ? server.Refusal(logger, endpoint) : attestation.Refusal(logger, endpoint, ssl);
                await ssl.DisposeAsync().ConfigureAwait(false);
                throw refusal;
            }
            // The server is judged on the certificate the handshake proved, whether or not it asked us to attest.
            var remote = ssl.RemoteCertificate as X509Certificate2;
            if (!await server.CheckFinalAsync(remote).ConfigureAwait(false))
            {
                await ssl.DisposeAsync().ConfigureAwait(false);
                throw server.Refusal(logger, endpoint);
            }
            if (attestation.Problem is not null || ssl.LocalCertificate is null)
            {
                var refusal = attestation.Refusal(logger, endpoint, ssl);
                await ssl.DisposeAsync().ConfigureAwait(false);
                throw refusal;
            }
            AtlsLog.Report(logger, "server", server.Variant, server.Verdict!, endpoint);
            options.OnValidated?.Invoke(new AtlsPeer(server.Verdict!.Facts!, server.Verdict.Warnings, endpoint));
            return ssl;
        });
    }

    /// <summary>
    /// The client's certificate selection, shared by the attesting and the mutual handler. On Linux the callback runs
    /// once before the handshake (no server certificate yet) and again when the CertificateRequest arrives with its
    /// CA names; only the second call can attest. With a <see cref="ServerCheck"/>, the server is validated first.
    /// </summary>
    private sealed class ClientAttestation(IAttestationIssuer issuer, TimeProvider time, CancellationToken cancellationToken, ServerCheck? server = null)
    {
        public string? Problem { get; private set; }

        public X509Certificate Select(X509Certificate? remoteCertificate, string[] acceptableIssuers)
        {
            if (remoteCertificate is null)
            {
                return null!;
            }
            // The callback is synchronous; validation is one signature check, the simulated issuer completes inline,
            // a TPM quote takes ~1 ms.
            if (server is not null && !server.CheckAsync(remoteCertificate).AsTask().GetAwaiter().GetResult())
            {
                // No document for a server we do not trust: it gets an empty Certificate message.
                return null!;
            }
            if (!AtlsNonce.TryParseAuthorities(acceptableIssuers, out var nonce))
            {
                Problem = "the server's certificate request carries no aTLS nonce";
                return null!;
            }
            return AtlsCertificate.CreateAsync(issuer, nonce, time.GetUtcNow(), cancellationToken).AsTask().GetAwaiter().GetResult();
        }

        /// <summary>Before the stream is disposed (it reads the stream's local certificate).</summary>
        public AtlsRefusedException Refusal(ILogger logger, string endpoint, SslStream ssl)
        {
            var problem = Problem ?? (ssl.LocalCertificate is null ? "the server did not request a client certificate" : "unknown");
            AtlsLog.HandshakeRefused(logger, "NoNonce", endpoint, problem);
            return new AtlsRefusedException(AttestationFailure.MissingExtension, "aTLS: " + (Problem ?? "the server did not ask this client to attest"));
        }
    }

    /// <summary>The mutual handler's verdict on the server, reached in the selection callback or after the handshake.</summary>
    private sealed class ServerCheck(AtlsCertificateVerifier verifier, byte[] nonce, CancellationToken cancellationToken)
    {
        private byte[]? _checked;

        public AttestationVerdict? Verdict { get; private set; }

        public string Variant { get; private set; } = "none";

        public async ValueTask<bool> CheckAsync(X509Certificate certificate)
        {
            if (Verdict is null)
            {
                using var copy = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
                (Verdict, Variant) = await verifier.VerifyAsync(copy, nonce, cancellationToken).ConfigureAwait(false);
                _checked = copy.RawData;
            }
            return Verdict.Accepted;
        }

        /// <summary>After the handshake: the verdict must be about the certificate the server proved it holds.</summary>
        public async ValueTask<bool> CheckFinalAsync(X509Certificate2? certificate)
        {
            if (certificate is null)
            {
                Verdict = AttestationVerdict.Refuse(AttestationFailure.MissingExtension, "server presented no certificate");
                return false;
            }
            if (_checked is not null && !certificate.RawData.AsSpan().SequenceEqual(_checked))
            {
                Verdict = AttestationVerdict.Refuse(AttestationFailure.UserDataMismatch, "the server's certificate changed after it was validated");
                return false;
            }
            return await CheckAsync(certificate).ConfigureAwait(false);
        }

        public AtlsRefusedException Refusal(ILogger logger, string endpoint)
        {
            AtlsLog.Report(logger, "server", Variant, Verdict!, endpoint);
            return new AtlsRefusedException(Verdict!.Failure, $"aTLS: server attestation refused ({Verdict.Failure}): {Verdict.Message}");
        }
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
                // Asterism only ever talks to loopback (127.0.0.0/8, ::1): refuse names and other addresses before
                // any packet leaves, so a mistyped or hostile endpoint is never dialled.
                if (!IPAddress.TryParse(context.DnsEndPoint.Host.Trim('[', ']'), out var address) || !IPAddress.IsLoopback(address))
                {
                    throw new HttpRequestException($"aTLS: refusing to dial {endpoint}: only loopback addresses (127.0.0.0/8, ::1) are allowed");
                }
                using var timeout = new CancellationTokenSource(handshakeTimeout, time);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    await socket.ConnectAsync(new IPEndPoint(address, context.DnsEndPoint.Port), linked.Token).ConfigureAwait(false);
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
