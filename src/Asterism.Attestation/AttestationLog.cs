using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;

// Fixed texts on purpose: every parameter is a field of the JSON line, none a hole in the message.
#pragma warning disable SYSLIB1015

namespace Asterism.Attestation;

/// <summary>
/// Every message of the attestation validators (event ids 5000–5999) in the house format (ARCHITECTURE.md §9), with
/// Constellation's texts. Every line names the variant, so a `simulated` attestation is never mistaken for a real one.
/// </summary>
public static partial class AttestationLog
{
    [LoggerMessage(5000, LogLevel.Information, "Successfully validated attestation document")]
    internal static partial void Accepted(ILogger logger, string variant, string attestationKey,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(5001, LogLevel.Warning, "Failed to validate attestation document")]
    internal static partial void Refused(ILogger logger, string variant, string reason, string attestationKey, string error,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(5002, LogLevel.Warning, "Encountered measurement warning")]
    internal static partial void Warning(ILogger logger, string variant, string attestationKey, string warning,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    /// <summary>Logs one validation outcome: accepted (plus each measurement warning) or refused with its reason.</summary>
    public static void Report(ILogger logger, string variant, string keyFingerprint, AttestationVerdict verdict,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0)
    {
        if (!verdict.Accepted)
        {
            Refused(logger, variant, verdict.Failure.ToString(), keyFingerprint, verdict.Message, callerFile, callerLine);
            return;
        }
        Accepted(logger, variant, keyFingerprint, callerFile, callerLine);
        foreach (var warning in verdict.Warnings)
        {
            Warning(logger, variant, keyFingerprint, warning, callerFile, callerLine);
        }
    }
}
