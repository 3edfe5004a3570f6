using System.Runtime.CompilerServices;
using Asterism.Attestation;
using Asterism.Logging;
using Microsoft.Extensions.Logging;

namespace Asterism.Atls;

/// <summary>
/// aTLS log lines in the house format (ARCHITECTURE.md §9): a fixed message, the values in fields, the caller of the
/// aTLS code that logged. Every attestation line names the variant and, when refused, the reason.
/// </summary>
internal static class AtlsLog
{
    public static void Attested(ILogger logger, string role, string variant, string keyFingerprint, string peer,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0) =>
        logger.Info("Attested peer", [Field.Of("role", role), Field.Of("variant", variant), Field.Of("attestationKey", keyFingerprint), Field.Of("peer", peer)], file, line);

    public static void Refused(ILogger logger, string role, string variant, AttestationFailure reason, string peer, string detail,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0) =>
        logger.Warn("Refused attested peer", [Field.Of("role", role), Field.Of("variant", variant), Field.Of("reason", reason.ToString()), Field.Of("peer", peer), Field.Of("error", detail)], file, line);

    public static void AttestationWarning(ILogger logger, string role, string variant, string peer, string warning,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0) =>
        logger.Warn("Encountered measurement warning", [Field.Of("role", role), Field.Of("variant", variant), Field.Of("peer", peer), Field.Of("warning", warning)], file, line);

    public static void HandshakeRefused(ILogger logger, string reason, string peer, string detail,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0) =>
        logger.Warn("Refused TLS handshake", [Field.Of("reason", reason), Field.Of("peer", peer), Field.Of("error", detail)], file, line);

    /// <summary>
    /// Debug: a transport failure (reset, timeout) is not an attestation outcome, and every caller reports its own
    /// failed call; at Warning it doubled each "Failed to rejoin on endpoint" line on a waiting node's console.
    /// </summary>
    public static void HandshakeFailed(ILogger logger, string peer, string detail,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0) =>
        logger.Debug("TLS handshake failed", [Field.Of("peer", peer), Field.Of("error", detail)], file, line);

    /// <summary>Debug per connection: under a flood each event would be a line.</summary>
    public static void HandshakeShed(ILogger logger, string action, string peer,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0) =>
        logger.Debug("Shed pending TLS handshake", [Field.Of("action", action), Field.Of("peer", peer)], file, line);

    public static void HandshakeBudgetExceeded(ILogger logger, int maxPending, long shed, long refused,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0) =>
        logger.Warn("Reached pending TLS handshake limit", [Field.Of("maxPending", maxPending), Field.Of("shedTotal", shed), Field.Of("refusedTotal", refused)], file, line);

    public static void Report(ILogger logger, string role, string variant, AttestationVerdict verdict, string peer,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0)
    {
        if (!verdict.Accepted)
        {
            Refused(logger, role, variant, verdict.Failure, peer, verdict.Message, file, line);
            return;
        }
        Attested(logger, role, variant, verdict.Facts?.AttestationKeyFingerprint ?? "-", peer, file, line);
        foreach (var warning in verdict.Warnings)
        {
            AttestationWarning(logger, role, variant, peer, warning, file, line);
        }
    }
}
