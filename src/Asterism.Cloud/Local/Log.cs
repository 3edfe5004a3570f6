using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;

// Fixed texts on purpose (the house log format, Asterism.Logging's README): every parameter is a field of the JSON
// line, none a hole in the message, so the generator's "argument not referenced" warning is the design here.
#pragma warning disable SYSLIB1015

namespace Asterism.Cloud.Local;

/// <summary>Every message of Asterism.Cloud (event ids 7000–7899): the local provider and the API credential check.</summary>
internal static partial class Log
{
    [LoggerMessage(7000, LogLevel.Information, "Provider ready")]
    public static partial void ProviderReady(ILogger logger, string metadataUrl, string loadBalancer, int count,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7001, LogLevel.Information, "Provider stopping")]
    public static partial void ProviderStopping(ILogger logger,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7002, LogLevel.Information, "Provider stopped")]
    public static partial void ProviderStopped(ILogger logger,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7010, LogLevel.Information, "Instance started")]
    public static partial void InstanceStarted(ILogger logger, string name, int pid, int boot,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7011, LogLevel.Information, "Instance exited")]
    public static partial void InstanceExited(ILogger logger, string name, int pid, int exitCode,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7012, LogLevel.Warning, "Instance ignored SIGTERM, killing")]
    public static partial void StopEscalated(ILogger logger, string name, int pid, double graceSeconds,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7013, LogLevel.Warning, "Power action failed")]
    public static partial void PowerFailed(ILogger logger, string name, string action, string error,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7014, LogLevel.Information, "Power action applied")]
    public static partial void PowerApplied(ILogger logger, string name, string action, bool changed, string power,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7015, LogLevel.Warning, "Killed an instance left running by a previous provider")]
    public static partial void StaleKilled(ILogger logger, string name, int pid,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7016, LogLevel.Warning, "Adopted an instance left running by a previous provider")]
    public static partial void InstanceAdopted(ILogger logger, string name, int pid, int boot,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7017, LogLevel.Warning, "Stopped a TPM left running by a previous provider")]
    public static partial void StaleTpmStopped(ILogger logger, string name, int pid,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7018, LogLevel.Warning, "Cleaned what a stopped instance left mounted")]
    public static partial void StateMountsCleaned(ILogger logger, string name, string actions,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7020, LogLevel.Information, "Backend healthy")]
    public static partial void BackendUp(ILogger logger, int port, string backend,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7021, LogLevel.Information, "Backend unhealthy")]
    public static partial void BackendDown(ILogger logger, int port, string backend,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7022, LogLevel.Debug, "No healthy backend, resetting client")]
    public static partial void NoBackend(ILogger logger, int port, string client,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7023, LogLevel.Warning, "Load balancer accept failed")]
    public static partial void AcceptFailed(ILogger logger, int port, string error,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7030, LogLevel.Warning, "Bad cloud API request")]
    public static partial void BadRequest(ILogger logger, string path, string error,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7050, LogLevel.Warning, "Refused API request without a valid credential")]
    public static partial void ApiRequestRefused(ILogger logger, string api, string method, string path, string peer, string reason,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7040, LogLevel.Information, "TPM powered on")]
    public static partial void TpmPoweredOn(ILogger logger, string name, int pid, string socket, int events,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7041, LogLevel.Information, "TPM shut down")]
    public static partial void TpmShutDown(ILogger logger, string name, int pid,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7042, LogLevel.Information, "TPM manufactured")]
    public static partial void TpmManufactured(ILogger logger, string name, double swtpmSetupMs, double totalMs,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7043, LogLevel.Information, "Attestation key certified after credential activation")]
    public static partial void TpmAkCertified(ILogger logger, string name, string akName, double ms,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(7044, LogLevel.Error, "Attestation key not certified")]
    public static partial void TpmAkRefused(ILogger logger, string name, string status, string reason,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);
}
