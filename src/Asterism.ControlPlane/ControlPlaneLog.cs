using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;

// Fixed texts on purpose: every parameter is a field of the JSON line, none a hole in the message.
#pragma warning disable SYSLIB1015

namespace Asterism.ControlPlane;

/// <summary>Every control-plane message (event ids 8000–8499) in the house format: a fixed text, values in fields.</summary>
internal static partial class ControlPlaneLog
{
    [LoggerMessage(8000, LogLevel.Information, "Started etcd member")]
    public static partial void MemberStarted(ILogger logger, string member, string clientUrl, int pid,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(8001, LogLevel.Information, "Exited etcd member")]
    public static partial void MemberExited(ILogger logger, string member, int pid, int exitCode,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(8002, LogLevel.Warning, "Killed etcd member after stop timeout")]
    public static partial void MemberKilled(ILogger logger, string member, int pid,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(8003, LogLevel.Warning, "Failed to signal etcd member")]
    public static partial void SignalFailed(ILogger logger, string member, int pid, int signal, int errno,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(8010, LogLevel.Information, "Added etcd member")]
    public static partial void MemberAdded(ILogger logger, string member, string peerUrl, bool learner,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(8011, LogLevel.Information, "Promoted etcd learner")]
    public static partial void MemberPromoted(ILogger logger, string member,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(8012, LogLevel.Information, "Removed etcd member")]
    public static partial void MemberRemoved(ILogger logger, string member,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(8020, LogLevel.Warning, "Found broken audit chain")]
    public static partial void AuditBroken(ILogger logger, long sequence, string reason,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);
}
