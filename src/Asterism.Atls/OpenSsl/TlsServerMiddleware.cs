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
    /// Every connection: a handshake (within <paramref name="handshakeTimeout"/>) in which
    /// <paramref name="credentials"/> picks the certificate from the TLS server name and the peer's address (null:
    /// refuse), then Kestrel reads HTTP/2 (ALPN h2 is required) from the decrypted stream. A failed handshake is
    /// closed and logged: at Debug when the client caused it, at Warning when this server did.
    /// </summary>
    /// <remarks>The OpenSSL context lives as long as the endpoint's middleware, that is, the process.</remarks>
    public static ListenOptions UseOpenSslTls(this ListenOptions listenOptions, Func<string?, string, CancellationToken, ValueTask<TlsCredential?>> credentials,
        TimeSpan handshakeTimeout, TimeProvider time, ILogger logger)
    {
        var tls = new TlsServerContext();
        listenOptions.Use(next => async connection =>
        {
            var peer = connection.RemoteEndPoint?.ToString() ?? "unknown";
            var transport = connection.Transport;
            var stream = new TlsServerStream(tls, transport);
            await using (stream.ConfigureAwait(false))
            {
                using (var timeout = new CancellationTokenSource(handshakeTimeout, time))
                using (var linked = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed, timeout.Token))
                {
                    try
                    {
                        if (!await stream.HandshakeAsync((serverName, ct) => credentials(serverName, peer, ct), linked.Token).ConfigureAwait(false))
                        {
                            return;
                        }
                    }
                    catch (OperationCanceledException) when (timeout.IsCancellationRequested)
                    {
                        AtlsLog.HandshakeFailed(logger, peer, $"timed out after {handshakeTimeout.TotalSeconds:0.###} s");
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
                var feature = new TlsFeature(stream.ApplicationProtocol, stream.CipherSuite, stream.ServerNameSent);
                connection.Features.Set<ITlsConnectionFeature>(feature);
                connection.Features.Set<ITlsApplicationProtocolFeature>(feature);
                connection.Features.Set<ITlsHandshakeFeature>(feature);
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
