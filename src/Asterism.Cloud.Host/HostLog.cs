using Microsoft.Extensions.Logging;

namespace Asterism.Cloud.Host;

/// <summary>Every message of <c>asterism-cloud</c> itself (event ids 7900–7999); the provider's are in Asterism.Cloud.</summary>
internal static partial class HostLog
{
    [LoggerMessage(7900, LogLevel.Error, "Provider failed to start: {Error}")]
    public static partial void ProviderFailedToStart(ILogger logger, string error);
}
