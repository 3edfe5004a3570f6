using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;

// Fixed texts on purpose: every parameter is a field of the JSON line, none a hole in the message.
#pragma warning disable SYSLIB1015

namespace Asterism.JoinService;

/// <summary>
/// Every message of the JoinService (event ids 2000–2999), with Constellation's texts. Lines name the caller's
/// address, attestation key and certified identity, and the disk UUID — never key bytes.
/// </summary>
public static partial class JoinServiceLog
{
    /// <summary>The JoinService's logger name; its finished gRPC calls log as <c>joinService.gRPC</c>.</summary>
    public const string Category = "joinService";

    [LoggerMessage(2000, LogLevel.Information, "IssueRejoinTicket called")]
    internal static partial void RejoinTicketCalled(ILogger logger, string peerAddress, string variant, string attestationKey, string identity, string role,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(2001, LogLevel.Information, "IssueRejoinTicket successful")]
    internal static partial void RejoinTicketIssued(ILogger logger, string diskUuid,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(2002, LogLevel.Information, "IssueJoinTicket called")]
    internal static partial void JoinTicketCalled(ILogger logger, string peerAddress, string nodeName, bool controlPlane,
        string variant, string attestationKey, string identity, string role,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(2003, LogLevel.Information, "IssueJoinTicket successful")]
    internal static partial void JoinTicketIssued(ILogger logger, string diskUuid, string nodeName,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(2004, LogLevel.Warning, "Refused ticket request for another role or name")]
    internal static partial void RefusedOtherRoleOrName(ILogger logger, string call, string peerAddress, string identity, string role,
        string requestedName, bool requestedControlPlane,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(2005, LogLevel.Warning, "Refused ticket request with invalid disk UUID")]
    internal static partial void RefusedInvalidDiskUuid(ILogger logger, string call,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(2006, LogLevel.Warning, "Refused ticket request for a disk of another node")]
    internal static partial void RefusedOtherNodesDisk(ILogger logger, string call, string peerAddress, string identity, string role,
        string ownedDiskUuid, string requestedDiskUuid,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(2007, LogLevel.Warning, "Refused ticket request without attestation")]
    internal static partial void RefusedWithoutAttestation(ILogger logger, string call, string peerAddress,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(2008, LogLevel.Warning, "Refused ticket request without a certified identity")]
    internal static partial void RefusedWithoutIdentity(ILogger logger, string call, string peerAddress, string attestationKey,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(2009, LogLevel.Warning, "Refused key release by the node registry")]
    internal static partial void RefusedByRegistry(ILogger logger, string identity, string identityFingerprint, string diskUuid, string reason,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(2010, LogLevel.Warning, "Control plane join did not complete")]
    internal static partial void ControlPlaneJoinFailed(ILogger logger, string identity, string error,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(2011, LogLevel.Warning, "Refused key release without control-plane quorum")]
    internal static partial void RefusedNoQuorum(ILogger logger, string call, string identity, string error,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [LoggerMessage(2012, LogLevel.Warning, "Refused key release: this control plane cannot serve the key generation the registry names")]
    internal static partial void RefusedGenerationNotHeld(ILogger logger, string identity, string diskUuid, int generation, int heldGeneration, string reason,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);
}
