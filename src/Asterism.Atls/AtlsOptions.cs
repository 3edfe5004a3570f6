using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;

namespace Asterism.Atls;

/// <summary>Server-side aTLS settings.</summary>
public sealed class AtlsServerOptions
{
    /// <summary>Limit for the TLS handshake (including issuing the attestation document).</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Limit for validating a client's document (client-attests mode).</summary>
    public TimeSpan ValidationTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Certificate the server presents when only the client attests; a fresh self-signed one when null.</summary>
    public X509Certificate2? ServerCertificate { get; set; }

    /// <summary>
    /// Limit from accepting a connection to having its ClientHello. A genuine client sends it at once; a connection
    /// that idles is closed, so idle connections cannot hold the listener's pending places for long.
    /// </summary>
    public TimeSpan ClientHelloTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Connections this listener holds before they have authenticated (handshake and validation). A newcomer
    /// beyond it sheds the one that has waited longest on its peer; see the README's "Work budgets".
    /// </summary>
    public int MaxPendingHandshakes { get; set; } = 256;

    /// <summary>
    /// Attestation work (issuing a document, validating a peer's) this listener runs at once; further work waits
    /// first come first served. A TPM serves one quote at a time anyway; 2 keeps one core free for TLS.
    /// </summary>
    public int MaxConcurrentAttestations { get; set; } = 2;

    /// <summary>
    /// Connections this listener holds after they have authenticated. Where only the server attests anyone can
    /// authenticate, so without this bound a local process could keep connections open without limit. A newcomer
    /// beyond it closes the oldest authenticated connection (never refused), so the operator still gets in and an
    /// attacker must keep paying for fresh handshakes, first come first served, to push it out.
    /// </summary>
    public int MaxAuthenticatedConnections { get; set; } = 128;

    public ILoggerFactory? LoggerFactory { get; set; }

    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Tests and benchmarks observe the listener's budget (pending and running counts).</summary>
    internal Action<HandshakeBudget>? BudgetCreated { get; set; }
}

/// <summary>Client-side aTLS settings.</summary>
public sealed class AtlsClientOptions
{
    /// <summary>Limit for connect + TLS handshake + validation of one connection.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Limit for validating the server's document (server-attests mode).</summary>
    public TimeSpan ValidationTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Called once per connection after the server's attestation was accepted, before any request is sent.</summary>
    public Action<AtlsPeer>? OnValidated { get; set; }

    public ILoggerFactory? LoggerFactory { get; set; }

    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;
}
