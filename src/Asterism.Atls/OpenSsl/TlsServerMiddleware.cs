using System.IO.Pipelines;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Extensions.Logging;

namespace Asterism.Atls.OpenSsl;

/// <summary>Kestrel connection middleware that runs TLS with <see cref="TlsServerStream"/> in place of UseHttps.</summary>
internal static class TlsServerMiddleware
{
    /// <summary>
    /// Every connection: admitted by the listener's <see cref="HandshakeBudget"/>, then a handshake (within
    /// <see cref="AtlsServerOptions.HandshakeTimeout"/>) in which <paramref name="credentials"/> picks the certificate
    /// from the TLS server name and the peer's address (null: refuse), then Kestrel reads HTTP/2 (ALPN h2 is required)
    /// from the decrypted stream. With <paramref name="clientVerifier"/> the client must present a certificate attested
    /// for a fresh nonce sent as the CertificateRequest's only CA name, validated before any request is read. A failed
    /// handshake is closed and logged: at Debug when the client caused it, at Warning when this server did.
    /// </summary>
    /// <remarks>The OpenSSL context and the budget live as long as the endpoint's middleware, that is, the process.</remarks>
    public static ListenOptions UseOpenSslTls(this ListenOptions listenOptions,
        Func<string?, string, PendingHandshake, CancellationToken, ValueTask<TlsCredential?>> credentials,
        AtlsServerOptions options, ILogger logger, AtlsCertificateVerifier? clientVerifier = null)
    {
        var tls = new TlsServerContext();
        var budget = new HandshakeBudget(options, logger);
        var handshakeTimeout = options.HandshakeTimeout;
        var time = options.TimeProvider;
        listenOptions.Use(next => async connection =>
        {
            var peer = connection.RemoteEndPoint?.ToString() ?? "unknown";
            using var pending = budget.TryAdmit(() => connection.Abort(new ConnectionAbortedException("aTLS: pending handshake shed")), peer);
            if (pending is null)
            {
                return;
            }
            var transport = connection.Transport;
            var stream = new TlsServerStream(tls, transport);
            await using (stream.ConfigureAwait(false))
            {
                byte[]? clientNonce = null;
                if (clientVerifier is not null)
                {
                    clientNonce = AtlsNonce.Create();
                    stream.RequestClientCertificate(AtlsNonce.AuthorityName(clientNonce).RawData);
                }
                AtlsPeer? client = null;
                X509Certificate2? clientCertificate = null;
                using (var timeout = new CancellationTokenSource(handshakeTimeout, time))
                using (var linked = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed, timeout.Token, pending.Aborted))
                {
                    try
                    {
                        if (!await stream.HandshakeAsync((serverName, ct) =>
                        {
                            pending.ClientHelloReceived();
                            return credentials(serverName, peer, pending, ct);
                        }, linked.Token).ConfigureAwait(false))
                        {
                            return;
                        }
                        if (clientVerifier is not null)
                        {
                            clientCertificate = LoadCertificate(stream.PeerCertificate());
                            var (verdict, variant) = await pending.RunAttestationAsync(ct => clientVerifier.VerifyAsync(clientCertificate, clientNonce, ct), linked.Token).ConfigureAwait(false);
                            AtlsLog.Report(logger, "client", variant, verdict, peer);
                            if (!verdict.Accepted)
                            {
                                connection.Abort(new ConnectionAbortedException("aTLS: client attestation refused"));
                                return;
                            }
                            client = new AtlsPeer(verdict.Facts!, verdict.Warnings, peer);
                        }
                    }
                    catch (OperationCanceledException) when (timeout.IsCancellationRequested || pending.Aborted.IsCancellationRequested)
                    {
                        AtlsLog.HandshakeFailed(logger, peer, pending.Aborted.IsCancellationRequested
                            ? "closed by the handshake budget (no ClientHello in time, or shed for a newer connection)"
                            : $"timed out after {handshakeTimeout.TotalSeconds:0.###} s");
                        return;
                    }
                    catch (Exception e) when (e is IOException or AuthenticationException or OperationCanceledException)
                    {
                        // The client's side: it went away, spoke no TLS 1.3, offered no h2, or was too slow.
                        AtlsLog.HandshakeFailed(logger, peer, e.Message);
                        return;
                    }
                    catch (Exception e) when (e is not OutOfMemoryException)
                    {
                        // This server's side (OpenSSL refused our certificate, a bug): the operator must see it. The
                        // connection is closed before HTTP/2 starts either way.
                        AtlsLog.HandshakeRefused(logger, "ServerError", peer, e.Message);
                        return;
                    }
                }
                // Authenticated (as far as this listener checks): out of the pending budget, into the bounded set of
                // authenticated connections; from here Kestrel's own limits apply too.
                pending.Dispose();
                using var authenticated = budget.AdmitAuthenticated(() => connection.Abort(new ConnectionAbortedException("aTLS: authenticated connection shed")), peer);
                // gRPC needs HTTP/2; without ALPN Kestrel would fall back to HTTP/1.1 on a mixed endpoint. The
                // ClientHello and ALPN callbacks already refuse such clients: this is the second lock on that door.
                if (!stream.ApplicationProtocol.Span.SequenceEqual("h2"u8))
                {
                    AtlsLog.HandshakeFailed(logger, peer, "the client did not negotiate h2 (ALPN)");
                    return;
                }
                var input = PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true));
                var output = PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true));
                connection.Transport = new TlsDuplexPipe(input, output);
                var feature = new TlsFeature(stream.ApplicationProtocol, stream.CipherSuite, stream.ServerNameSent) { ClientCertificate = clientCertificate };
                connection.Features.Set<ITlsConnectionFeature>(feature);
                connection.Features.Set<ITlsApplicationProtocolFeature>(feature);
                connection.Features.Set<ITlsHandshakeFeature>(feature);
                if (client is not null)
                {
                    connection.Features.Set<IAtlsPeerFeature>(new AtlsPeerFeature(client));
                }
                try
                {
                    await next(connection).ConfigureAwait(false);
                }
                finally
                {
                    connection.Transport = transport;
                    await CompleteQuietlyAsync(input.CompleteAsync()).ConfigureAwait(false);
                    await CompleteQuietlyAsync(output.CompleteAsync()).ConfigureAwait(false);
                }
            }
        });
        return listenOptions;
    }

    /// <summary>The client's certificate as .NET sees it, or null (none sent, or not parseable: refused as missing).</summary>
    private static X509Certificate2? LoadCertificate(byte[]? der)
    {
        if (der is null)
        {
            return null;
        }
        try
        {
            return X509CertificateLoader.LoadCertificate(der);
        }
        catch (CryptographicException)
        {
            return null;
        }
    }

    /// <summary>Completing the pipes may flush into a connection that is already gone; that is not worth an error.</summary>
    private static async Task CompleteQuietlyAsync(ValueTask completion)
    {
        try
        {
            await completion.ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or ObjectDisposedException or OperationCanceledException)
        {
        }
    }

    private sealed class TlsDuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    /// <summary>
    /// Tells Kestrel (and services) the connection is TLS 1.3 with the negotiated ALPN ("h2"), so HTTP/2 is chosen and
    /// its TLS checks run as with UseHttps.
    /// </summary>
    private sealed class TlsFeature(ReadOnlyMemory<byte> applicationProtocol, TlsCipherSuite? cipherSuite, string hostName)
        : ITlsConnectionFeature, ITlsApplicationProtocolFeature, ITlsHandshakeFeature
    {
        public ReadOnlyMemory<byte> ApplicationProtocol { get; } = applicationProtocol;

        public X509Certificate2? ClientCertificate { get; set; }

        public SslProtocols Protocol => SslProtocols.Tls13;

        public TlsCipherSuite? NegotiatedCipherSuite { get; } = cipherSuite;

        public string HostName { get; } = hostName;

#pragma warning disable SYSLIB0058 // Obsolete, yet still required by the interface: NegotiatedCipherSuite is the answer.
        CipherAlgorithmType ITlsHandshakeFeature.CipherAlgorithm => CipherAlgorithmType.None;

        int ITlsHandshakeFeature.CipherStrength => 0;

        HashAlgorithmType ITlsHandshakeFeature.HashAlgorithm => HashAlgorithmType.None;

        int ITlsHandshakeFeature.HashStrength => 0;

        ExchangeAlgorithmType ITlsHandshakeFeature.KeyExchangeAlgorithm => ExchangeAlgorithmType.None;

        int ITlsHandshakeFeature.KeyExchangeStrength => 0;
#pragma warning restore SYSLIB0058

        public Task<X509Certificate2?> GetClientCertificateAsync(CancellationToken cancellationToken) => Task.FromResult<X509Certificate2?>(null);
    }
}
