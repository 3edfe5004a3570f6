using System.Runtime.CompilerServices;
using Asterism.Logging;
using Microsoft.Extensions.Logging;

namespace Asterism.Attestation;

/// <summary>
/// Log lines of the attestation validators in the house format (ARCHITECTURE.md §9), with Constellation's texts.
/// Every line names the variant, so a `simulated` attestation is never mistaken for a real one.
/// </summary>
public static class AttestationLog
{
    public static void Accepted(ILogger logger, string variant, string keyFingerprint,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0) =>
        logger.Info("Successfully validated attestation document", [Field.Of("variant", variant), Field.Of("attestationKey", keyFingerprint)], file, line);

    public static void Refused(ILogger logger, string variant, AttestationFailure reason, string keyFingerprint, string detail,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0) =>
        logger.Warn("Failed to validate attestation document", [Field.Of("variant", variant), Field.Of("reason", reason.ToString()), Field.Of("attestationKey", keyFingerprint), Field.Of("error", detail)], file, line);

    public static void Warning(ILogger logger, string variant, string keyFingerprint, string warning,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0) =>
        logger.Warn("Encountered measurement warning", [Field.Of("variant", variant), Field.Of("attestationKey", keyFingerprint), Field.Of("warning", warning)], file, line);

    /// <summary>Logs one validation outcome: accepted (plus each measurement warning) or refused with its reason.</summary>
    public static void Report(ILogger logger, string variant, string keyFingerprint, AttestationVerdict verdict,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0)
    {
        if (!verdict.Accepted)
        {
            Refused(logger, variant, verdict.Failure, keyFingerprint, verdict.Message, file, line);
            return;
        }
        Accepted(logger, variant, keyFingerprint, file, line);
        foreach (var warning in verdict.Warnings)
        {
            Warning(logger, variant, keyFingerprint, warning, file, line);
        }
    }
}
