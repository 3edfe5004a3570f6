using Microsoft.Extensions.Logging;

namespace Asterism.Cloud.Local;

/// <summary>Every message of Asterism.Cloud (event ids 7000–7899): the local provider and the API credential check.</summary>
internal static partial class Log
{
    [LoggerMessage(7000, LogLevel.Information, "Provider ready metadata={MetadataUrl} loadBalancer={LoadBalancer} instances={Count}")]
    public static partial void ProviderReady(ILogger logger, string metadataUrl, string loadBalancer, int count);

    [LoggerMessage(7001, LogLevel.Information, "Provider stopping")]
    public static partial void ProviderStopping(ILogger logger);

    [LoggerMessage(7002, LogLevel.Information, "Provider stopped")]
    public static partial void ProviderStopped(ILogger logger);

    [LoggerMessage(7010, LogLevel.Information, "Instance started name={Name} pid={Pid} boot={Boot}")]
    public static partial void InstanceStarted(ILogger logger, string name, int pid, int boot);

    [LoggerMessage(7011, LogLevel.Information, "Instance exited name={Name} pid={Pid} exitCode={ExitCode}")]
    public static partial void InstanceExited(ILogger logger, string name, int pid, int exitCode);

    [LoggerMessage(7012, LogLevel.Warning, "Instance ignored SIGTERM, killing name={Name} pid={Pid} graceSeconds={Grace}")]
    public static partial void StopEscalated(ILogger logger, string name, int pid, double grace);

    [LoggerMessage(7013, LogLevel.Warning, "Power action failed name={Name} action={Action} error={Error}")]
    public static partial void PowerFailed(ILogger logger, string name, string action, string error);

    [LoggerMessage(7014, LogLevel.Information, "Power action name={Name} action={Action} changed={Changed} power={Power}")]
    public static partial void PowerApplied(ILogger logger, string name, string action, bool changed, string power);

    [LoggerMessage(7015, LogLevel.Warning, "Killed an instance left running by a previous provider name={Name} pid={Pid}")]
    public static partial void StaleKilled(ILogger logger, string name, int pid);

    [LoggerMessage(7016, LogLevel.Warning, "Adopted an instance left running by a previous provider name={Name} pid={Pid} boot={Boot}")]
    public static partial void InstanceAdopted(ILogger logger, string name, int pid, int boot);

    [LoggerMessage(7017, LogLevel.Warning, "Stopped a TPM left running by a previous provider name={Name} pid={Pid}")]
    public static partial void StaleTpmStopped(ILogger logger, string name, int pid);

    [LoggerMessage(7018, LogLevel.Warning, "Cleaned what a stopped instance left mounted name={Name} actions={Actions}")]
    public static partial void StateMountsCleaned(ILogger logger, string name, string actions);

    [LoggerMessage(7020, LogLevel.Information, "Backend healthy port={Port} backend={Backend}")]
    public static partial void BackendUp(ILogger logger, int port, string backend);

    [LoggerMessage(7021, LogLevel.Information, "Backend unhealthy port={Port} backend={Backend}")]
    public static partial void BackendDown(ILogger logger, int port, string backend);

    [LoggerMessage(7022, LogLevel.Debug, "No healthy backend, resetting client port={Port} client={Client}")]
    public static partial void NoBackend(ILogger logger, int port, string client);

    [LoggerMessage(7023, LogLevel.Warning, "Load balancer accept failed port={Port} error={Error}")]
    public static partial void AcceptFailed(ILogger logger, int port, string error);

    [LoggerMessage(7030, LogLevel.Warning, "Bad cloud API request path={Path} error={Error}")]
    public static partial void BadRequest(ILogger logger, string path, string error);

    [LoggerMessage(7050, LogLevel.Warning, "Refused API request without a valid credential api={Api} method={Method} path={Path} peer={Peer} reason={Reason}")]
    public static partial void ApiRequestRefused(ILogger logger, string api, string method, string path, string peer, string reason);

    [LoggerMessage(7040, LogLevel.Information, "TPM powered on name={Name} pid={Pid} socket={Socket} events={Events}")]
    public static partial void TpmPoweredOn(ILogger logger, string name, int pid, string socket, int events);

    [LoggerMessage(7041, LogLevel.Information, "TPM shut down name={Name} pid={Pid}")]
    public static partial void TpmShutDown(ILogger logger, string name, int pid);

    [LoggerMessage(7042, LogLevel.Information, "TPM manufactured name={Name} swtpmSetupMs={SetupMs:F0} totalMs={TotalMs:F0}")]
    public static partial void TpmManufactured(ILogger logger, string name, double setupMs, double totalMs);

    [LoggerMessage(7043, LogLevel.Information, "Attestation key certified after credential activation name={Name} akName={AkName} ms={Ms:F1}")]
    public static partial void TpmAkCertified(ILogger logger, string name, string akName, double ms);

    [LoggerMessage(7044, LogLevel.Error, "Attestation key not certified name={Name} status={Status} reason={Reason}")]
    public static partial void TpmAkRefused(ILogger logger, string name, string status, string reason);
}
