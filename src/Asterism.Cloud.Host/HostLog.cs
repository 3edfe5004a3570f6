using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;

// A fixed text on purpose: the error is a field of the JSON line (see Asterism.Cloud's Local/Log.cs).
#pragma warning disable SYSLIB1015

namespace Asterism.Cloud.Host;

/// <summary>Every message of <c>asterism-cloud</c> itself (event ids 7900–7999); the provider's are in Asterism.Cloud.</summary>
internal static partial class HostLog
{
    [LoggerMessage(7900, LogLevel.Error, "Provider failed to start")]
    public static partial void ProviderFailedToStart(ILogger logger, string error,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);
}
