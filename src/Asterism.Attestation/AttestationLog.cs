using Microsoft.Extensions.Logging;

namespace Asterism.Attestation;

/// <summary>Log messages of the attestation validators (event ids 1000-1099). Every line names the variant.</summary>
public static partial class AttestationLog
{
    [LoggerMessage(EventId = 1000, Level = LogLevel.Information,
        Message = "Attestation accepted: variant {Variant}, attestation key {KeyFingerprint}")]
    public static partial void Accepted(ILogger logger, string variant, string keyFingerprint);

    [LoggerMessage(EventId = 1001, Level = LogLevel.Warning,
        Message = "Attestation refused: variant {Variant}, reason {Reason}, attestation key {KeyFingerprint}: {Detail}")]
    public static partial void Refused(ILogger logger, string variant, AttestationFailure reason, string keyFingerprint, string detail);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Warning,
        Message = "Attestation warning: variant {Variant}, attestation key {KeyFingerprint}: Encountered {Warning}")]
    public static partial void Warning(ILogger logger, string variant, string keyFingerprint, string warning);

    /// <summary>Logs one validation outcome: accepted (plus each measurement warning) or refused with its reason.</summary>
    public static void Report(ILogger logger, string variant, string keyFingerprint, AttestationVerdict verdict)
    {
        if (!verdict.Accepted)
        {
            Refused(logger, variant, verdict.Failure, keyFingerprint, verdict.Message);
            return;
        }
        Accepted(logger, variant, keyFingerprint);
        foreach (var warning in verdict.Warnings)
        {
            Warning(logger, variant, keyFingerprint, warning);
        }
    }
}
