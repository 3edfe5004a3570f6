using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Asterism.Atls.OpenSsl;
using Asterism.Attestation;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Atls;

/// <summary>One-line Kestrel wiring for both aTLS directions.</summary>
public static class AtlsListenOptionsExtensions
{
    internal const string LoggerCategory = "atls";

    /// <summary>
    /// Server attests: reads the client's nonce from the TLS server name, and presents a fresh self-signed certificate
    /// per connection carrying <paramref name="issuer"/>'s document bound to the certificate key and that nonce.
    /// Connections without a nonce server name are refused in the handshake. TLS is run by OpenSSL directly with one
    /// shared context (see <see cref="TlsServerContext"/>); Kestrel sees a TLS 1.3 connection with ALPN h2.
    /// </summary>
    public static ListenOptions UseAtlsServer(this ListenOptions listenOptions, IAttestationIssuer issuer, Action<AtlsServerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(listenOptions);
        ArgumentNullException.ThrowIfNull(issuer);
        var options = Configure(configure);
        var logger = Logger(options.LoggerFactory);
        var time = options.TimeProvider;
        return listenOptions.UseOpenSslTls((serverName, peer, pending, ct) => CredentialAsync(issuer, serverName, peer, pending, logger, time, ct), options, logger);
    }

    /// <inheritdoc cref="UseAtlsMutual(ListenOptions, IAttestationIssuer, AttestationValidatorSet, Action{AtlsServerOptions}?)"/>
    public static ListenOptions UseAtlsMutual(this ListenOptions listenOptions, IAttestationIssuer issuer, IAttestationValidator clientValidator, Action<AtlsServerOptions>? configure = null) =>
        listenOptions.UseAtlsMutual(issuer, new AttestationValidatorSet(clientValidator), configure);

    /// <summary>
    /// Both ends attest in one TLS 1.3 handshake. As in <see cref="UseAtlsServer"/>, the server presents a fresh
    /// certificate carrying <paramref name="issuer"/>'s document bound to the client's nonce (its TLS server name);
    /// as in <see cref="UseAtlsClientValidation(ListenOptions, AttestationValidatorSet, Action{AtlsServerOptions}?)"/>,
    /// it asks the client for a certificate attested for a fresh server nonce (the CertificateRequest's only CA name),
    /// and validates it with <paramref name="clientValidators"/> before Kestrel reads any request. The accepted client
    /// is available as <see cref="IAtlsPeerFeature"/>. Pair with <see cref="AtlsClient.CreateMutualHandler(IAttestationIssuer, AttestationValidatorSet, AtlsClientOptions?)"/>.
    /// </summary>
    public static ListenOptions UseAtlsMutual(this ListenOptions listenOptions, IAttestationIssuer issuer, AttestationValidatorSet clientValidators, Action<AtlsServerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(listenOptions);
        ArgumentNullException.ThrowIfNull(issuer);
        ArgumentNullException.ThrowIfNull(clientValidators);
        var options = Configure(configure);
        var logger = Logger(options.LoggerFactory);
        var time = options.TimeProvider;
        var verifier = new AtlsCertificateVerifier(clientValidators, options.ValidationTimeout, time);
        return listenOptions.UseOpenSslTls((serverName, peer, pending, ct) => CredentialAsync(issuer, serverName, peer, pending, logger, time, ct), options, logger, verifier);
    }

    private static AtlsServerOptions Configure(Action<AtlsServerOptions>? configure)
    {
        var options = new AtlsServerOptions();
        configure?.Invoke(options);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(options.HandshakeTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(options.ClientHelloTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxPendingHandshakes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxConcurrentAttestations, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxAuthenticatedConnections, 1);
        return options;
    }

    /// <summary>
    /// The connection's certificate: a fresh P-256 key and the issuer's document bound to it and to the nonce the
    /// client sent as its TLS server name; null (refuse, logged) when the name carries no nonce. The issuer runs
    /// within the listener's attestation budget; a client that left while queued costs nothing.
    /// </summary>
    private static async ValueTask<TlsCredential?> CredentialAsync(IAttestationIssuer issuer, string? serverName, string peer, PendingHandshake pending, ILogger logger, TimeProvider time, CancellationToken cancellationToken)
    {
        if (!AtlsNonce.TryParseServerName(serverName, out var nonce))
        {
            AtlsLog.HandshakeRefused(logger, "NoNonce", peer, "the TLS server name does not carry an aTLS nonce");
            return null;
        }
        var key = new ECDsaOpenSsl(ECCurve.NamedCurves.nistP256);
        try
        {
            var certificate = await pending.RunAttestationAsync(ct => AtlsCertificate.CreateDerAsync(key, issuer, nonce, time.GetUtcNow(), ct), cancellationToken).ConfigureAwait(false);
            return TlsCredential.Create(certificate, key);
        }
        catch (Exception e) when (!(e is OperationCanceledException && cancellationToken.IsCancellationRequested) && e is not OutOfMemoryException)
        {
            // A TPM that does not answer, for example: the operator must see it, the client gets an alert.
            AtlsLog.HandshakeRefused(logger, "IssuerFailed", peer, $"{issuer.Variant.Name} attestation failed: {e.Message}");
            return null;
        }
        finally
        {
            key.Dispose();
        }
    }

    /// <inheritdoc cref="UseAtlsClientValidation(ListenOptions, AttestationValidatorSet, Action{AtlsServerOptions}?)"/>
    public static ListenOptions UseAtlsClientValidation(this ListenOptions listenOptions, IAttestationValidator validator, Action<AtlsServerOptions>? configure = null) =>
        listenOptions.UseAtlsClientValidation(new AttestationValidatorSet(validator), configure);

    /// <summary>
    /// Client attests: every connection gets a fresh nonce, sent as the only acceptable CA name of the TLS
    /// CertificateRequest; the client must answer with a certificate carrying a document bound to its key and that
    /// nonce. The document is validated after the handshake and before Kestrel reads any request; refused connections
    /// are closed. The accepted peer is available as <see cref="IAtlsPeerFeature"/> (see <see cref="AtlsPeerExtensions"/>).
    /// </summary>
    public static ListenOptions UseAtlsClientValidation(this ListenOptions listenOptions, AttestationValidatorSet validators, Action<AtlsServerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(listenOptions);
        ArgumentNullException.ThrowIfNull(validators);
        var options = Configure(configure);
        var logger = Logger(options.LoggerFactory);
        var time = options.TimeProvider;
        var verifier = new AtlsCertificateVerifier(validators, options.ValidationTimeout, time);
        var budget = new HandshakeBudget(options, logger);
        var serverCertificate = options.ServerCertificate ?? CreateServerCertificate(time.GetUtcNow());
        // Signs the throw-away nonce authorities; only their names reach the wire, so one key serves all connections.
        var authorityKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        // Before UseHttps: admits the connection to the budget (ClientHello timeout, shedding) for the whole handshake.
        listenOptions.Use(next => async connection =>
        {
            var peer = connection.RemoteEndPoint?.ToString() ?? "unknown";
            using var pending = budget.TryAdmit(() => connection.Abort(new ConnectionAbortedException("aTLS: pending handshake shed")), peer);
            if (pending is null)
            {
                return;
            }
            connection.Features.Set(pending);
            await next(connection).ConfigureAwait(false);
        });
        listenOptions.UseHttps(new TlsHandshakeCallbackOptions
        {
            HandshakeTimeout = options.HandshakeTimeout,
            OnConnection = context =>
            {
                // Called once the ClientHello is parsed.
                context.Connection.Features.Get<PendingHandshake>()?.ClientHelloReceived();
                var nonce = AtlsNonce.Create();
                var authority = AtlsNonce.CreateAuthority(nonce, authorityKey, time.GetUtcNow());
                context.Connection.Features.Set(new AtlsServerNonceFeature(nonce));
                var trust = SslCertificateTrust.CreateForX509Collection([authority], sendTrustInHandshake: true);
                return ValueTask.FromResult(new SslServerAuthenticationOptions
                {
                    ServerCertificateContext = SslStreamCertificateContext.Create(serverCertificate, additionalCertificates: null, offline: true, trust),
                    ClientCertificateRequired = true,
                    // The attestation document, not a chain, decides: checked right after the handshake (a missing
                    // certificate too, so that refusal is logged with its reason).
                    RemoteCertificateValidationCallback = static (_, _, _, _) => true,
                    CertificateChainPolicy = AtlsChainPolicy.NoDownloads(),
                    EnabledSslProtocols = SslProtocols.Tls13,
                    AllowTlsResume = false,
                    CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                });
            },
        });
        listenOptions.Use(next => async connection =>
        {
            var peer = connection.RemoteEndPoint?.ToString() ?? "unknown";
            var nonce = connection.Features.Get<AtlsServerNonceFeature>()?.Nonce;
            var certificate = connection.Features.Get<ITlsConnectionFeature>()?.ClientCertificate;
            var pending = connection.Features.Get<PendingHandshake>();
            if (nonce is null || pending is null)
            {
                AtlsLog.HandshakeRefused(logger, "NoNonce", peer, "connection has no aTLS nonce");
                connection.Abort();
                return;
            }
            AttestationVerdict verdict;
            string variant;
            using (var linked = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed, pending.Aborted))
            {
                try
                {
                    (verdict, variant) = await pending.RunAttestationAsync(ct => verifier.VerifyAsync(certificate, nonce, ct), linked.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    AtlsLog.HandshakeFailed(logger, peer, "the client left, or the connection was shed, before its attestation was checked");
                    connection.Abort();
                    return;
                }
            }
            // Authenticated or refused: either way no longer pending.
            pending.Dispose();
            connection.Features.Set<PendingHandshake>(null);
            AtlsLog.Report(logger, "client", variant, verdict, peer);
            if (!verdict.Accepted)
            {
                connection.Abort(new ConnectionAbortedException("aTLS: client attestation refused"));
                return;
            }
            connection.Features.Set<IAtlsPeerFeature>(new AtlsPeerFeature(new AtlsPeer(verdict.Facts!, verdict.Warnings, peer)));
            using var authenticated = budget.AdmitAuthenticated(() => connection.Abort(new ConnectionAbortedException("aTLS: authenticated connection shed")), peer);
            await next(connection).ConfigureAwait(false);
        });
        return listenOptions;
    }

    internal static ILogger Logger(ILoggerFactory? factory) => factory?.CreateLogger(LoggerCategory) ?? NullLogger.Instance;

    private static X509Certificate2 CreateServerCertificate(DateTimeOffset now)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return AtlsCertificate.Build(key, now.AddHours(-2), now.AddYears(1));
    }
}
