using Asterism.Attestation;
using Microsoft.Extensions.Logging;

namespace Asterism.Atls;

/// <summary>aTLS log messages (event ids 1100-1199). Each attestation line names the variant and the reason.</summary>
internal static partial class AtlsLog
{
    [LoggerMessage(EventId = 1100, Level = LogLevel.Information,
        Message = "aTLS {Role} attested: variant {Variant}, attestation key {KeyFingerprint}, peer {Peer}")]
    public static partial void Attested(ILogger logger, string role, string variant, string keyFingerprint, string peer);

    [LoggerMessage(EventId = 1101, Level = LogLevel.Warning,
        Message = "aTLS {Role} refused: variant {Variant}, reason {Reason}, peer {Peer}: {Detail}")]
    public static partial void Refused(ILogger logger, string role, string variant, AttestationFailure reason, string peer, string detail);

    [LoggerMessage(EventId = 1102, Level = LogLevel.Warning,
        Message = "aTLS {Role} warning: variant {Variant}, peer {Peer}: Encountered {Warning}")]
    public static partial void AttestationWarning(ILogger logger, string role, string variant, string peer, string warning);

    [LoggerMessage(EventId = 1103, Level = LogLevel.Warning,
        Message = "aTLS handshake refused: reason {Reason}, peer {Peer}: {Detail}")]
    public static partial void HandshakeRefused(ILogger logger, string reason, string peer, string detail);

    // Debug: a transport failure (reset, timeout) is not an attestation outcome, and every caller reports its own
    // failed call; at Warning it doubled each "Failed to rejoin on endpoint" line on a waiting node's console.
    [LoggerMessage(EventId = 1104, Level = LogLevel.Debug,
        Message = "aTLS handshake with {Peer} failed: {Detail}")]
    public static partial void HandshakeFailed(ILogger logger, string peer, string detail);

    public static void Report(ILogger logger, string role, string variant, AttestationVerdict verdict, string peer)
    {
        if (!verdict.Accepted)
        {
            Refused(logger, role, variant, verdict.Failure, peer, verdict.Message);
            return;
        }
        Attested(logger, role, variant, verdict.Facts?.AttestationKeyFingerprint ?? "-", peer);
        foreach (var warning in verdict.Warnings)
        {
            AttestationWarning(logger, role, variant, peer, warning);
        }
    }
}
