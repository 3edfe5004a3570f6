using System.Runtime.CompilerServices;
using Asterism.Attestation;
using Microsoft.Extensions.Logging;

// Fixed texts on purpose: every parameter is a field of the JSON line, none a hole in the message.
#pragma warning disable SYSLIB1015

namespace Asterism.Atls;

/// <summary>
/// Every aTLS message (event ids 4000–4999) in the house format (ARCHITECTURE.md §9): a fixed message, the values in
/// fields, the caller of the aTLS code that logged. Every attestation line names the variant and, when refused, the
/// reason.
/// </summary>
internal static partial class AtlsLog
{
    [LoggerMessage(4000, LogLevel.Information, "Attested peer")]
    public static partial void Attested(ILogger logger, string role, string variant, string attestationKey, string peer,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(4001, LogLevel.Warning, "Refused attested peer")]
    public static partial void Refused(ILogger logger, string role, string variant, string reason, string peer, string error,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(4002, LogLevel.Warning, "Encountered measurement warning")]
    public static partial void AttestationWarning(ILogger logger, string role, string variant, string peer, string warning,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(4003, LogLevel.Warning, "Refused TLS handshake")]
    public static partial void HandshakeRefused(ILogger logger, string reason, string peer, string error,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    /// <summary>
    /// Debug: a transport failure (reset, timeout) is not an attestation outcome, and every caller reports its own
    /// failed call; at Warning it doubled each "Failed to rejoin on endpoint" line on a waiting node's console.
    /// </summary>
    [LoggerMessage(4004, LogLevel.Debug, "TLS handshake failed")]
    public static partial void HandshakeFailed(ILogger logger, string peer, string error,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    /// <summary>Debug per connection: under a flood each event would be a line.</summary>
    [LoggerMessage(4005, LogLevel.Debug, "Shed pending TLS handshake")]
    public static partial void HandshakeShed(ILogger logger, string action, string peer,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    /// <summary>Debug per connection, like <see cref="HandshakeShed"/>.</summary>
    [LoggerMessage(4007, LogLevel.Debug, "Shed authenticated TLS connection")]
    public static partial void AuthenticatedShed(ILogger logger, string peer,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(4006, LogLevel.Warning, "Reached pending TLS handshake limit")]
    public static partial void HandshakeBudgetExceeded(ILogger logger, int maxPending, long shedTotal, long refusedTotal,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    /// <summary>Logs one attestation outcome: attested (plus each measurement warning) or refused with its reason.</summary>
    public static void Report(ILogger logger, string role, string variant, AttestationVerdict verdict, string peer,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0)
    {
        if (!verdict.Accepted)
        {
            Refused(logger, role, variant, verdict.Failure.ToString(), peer, verdict.Message, callerFile, callerLine);
            return;
        }
        Attested(logger, role, variant, verdict.Facts?.AttestationKeyFingerprint ?? "-", peer, callerFile, callerLine);
        foreach (var warning in verdict.Warnings)
        {
            AttestationWarning(logger, role, variant, peer, warning, callerFile, callerLine);
        }
    }
}
