using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;

// The templates are fixed texts on purpose (the house log format): every parameter is a field of the JSON line,
// none is a hole in the message, so the generator's "argument not referenced" warning is the design here.
#pragma warning disable SYSLIB1015

namespace Asterism.Node;

/// <summary>
/// Every message of the node (event ids 1000–1999), grouped by the logger that writes it, with the texts and logger
/// names of Constellation's disk-mapper. The boot-flow table in the node's README lists the lines an operator sees;
/// a test holds both together.
/// </summary>
internal static partial class NodeLog
{
    /// <summary>The root logger (no <c>logger</c> key): the node's own lifecycle.</summary>
    internal static partial class Root
    {
        public const string Category = "";

        [LoggerMessage(1000, LogLevel.Information, "Starting disk-mapper")]
        public static partial void StartingDiskMapper(ILogger logger, string version, string cloudProvider, string node, string role, string variant,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1001, LogLevel.Information, "Applied measured boot events")]
        public static partial void AppliedMeasuredBoot(ILogger logger, int events, string variant,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        /// <summary>The disk header is invalid: the node touches nothing and exits.</summary>
        [LoggerMessage(1002, LogLevel.Error, "Failed to prepare state disk")]
        public static partial void InvalidStateDisk(ILogger logger, string? error, string? reason,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        /// <summary>Any other failure of the boot flow (the node exits 1).</summary>
        [LoggerMessage(1003, LogLevel.Error, "Failed to prepare state disk")]
        public static partial void BootFailed(ILogger logger, string error,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1004, LogLevel.Information, "Node stopping")]
        public static partial void NodeStopping(ILogger logger,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1005, LogLevel.Information, "Node booted")]
        public static partial void NodeBooted(ILogger logger, string role, long durationMs, int bootCount,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);
    }

    /// <summary>Preparing the state disk: first boot or reboot.</summary>
    internal static partial class SetupManager
    {
        public const string Category = "setupManager";

        [LoggerMessage(1100, LogLevel.Information, "Preparing new state disk")]
        public static partial void PreparingNewStateDisk(ILogger logger, string uuid,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1101, LogLevel.Information, "Preparing existing state disk")]
        public static partial void PreparingExistingStateDisk(ILogger logger, string uuid,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1102, LogLevel.Information, "Waiting for decryption key")]
        public static partial void WaitingForDecryptionKey(ILogger logger, string uuid, string recoveryEndpoint,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1104, LogLevel.Information, "Mounted state filesystem")]
        public static partial void StateFilesystemMounted(ILogger logger, string kind, string mountPoint, int leftoversRemoved,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1105, LogLevel.Information, "Unmounted state filesystem")]
        public static partial void StateFilesystemUnmounted(ILogger logger, string mountPoint,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1106, LogLevel.Error, "Failed to unmount state filesystem")]
        public static partial void StateFilesystemUnmountFailed(ILogger logger, string mountPoint, string error,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1103, LogLevel.Information, "State disk initialized")]
        public static partial void StateDiskInitialized(ILogger logger, string uuid, string source,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);
    }

    /// <summary>The RecoveryServer (control planes, port 9999) that takes keys from <c>asterism recover</c>.</summary>
    internal static partial class RecoveryServer
    {
        public const string Category = "recoveryServer";

        [LoggerMessage(1200, LogLevel.Information, "Starting RecoveryServer")]
        public static partial void Starting(ILogger logger,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1201, LogLevel.Information, "Running as worker node, skipping recovery server")]
        public static partial void SkippedOnWorker(ILogger logger,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1202, LogLevel.Information, "Received recover call")]
        public static partial void ReceivedCall(ILogger logger, string peer,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1203, LogLevel.Warning, "Refused recover call")]
        public static partial void RefusedCall(ILogger logger, string peer, string reason,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1204, LogLevel.Information, "Received state disk key and measurement secret, shutting down server")]
        public static partial void ReceivedKeys(ILogger logger, string peer,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        /// <summary>A pushed key that does not open keyslot 0, or a secret that does not derive this cluster's ID.</summary>
        [LoggerMessage(1205, LogLevel.Warning, "Rejected state disk key")]
        public static partial void RejectedKey(ILogger logger, string peer, string reason,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        /// <summary>The key opens the disk but the node state on it is unreadable: not the operator's mistake.</summary>
        [LoggerMessage(1206, LogLevel.Error, "Rejected state disk key")]
        public static partial void UnreadableState(ILogger logger, string peer, string reason,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        /// <summary>`recover --dry-run` asked who this node is; nothing was received, the node keeps waiting.</summary>
        [LoggerMessage(1207, LogLevel.Information, "Answered recovery probe, still waiting for decryption key")]
        public static partial void AnsweredProbe(ILogger logger, string peer,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        /// <summary>The node's own warm-up probe (it carried the process's token): no operator, no key.</summary>
        [LoggerMessage(1208, LogLevel.Debug, "Answered the node's own warm-up probe")]
        public static partial void AnsweredOwnProbe(ILogger logger, string peer,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        /// <summary>The recover path ran once while the node waits (<c>RecoveryWarmup</c>), so the operator's call finds it warm.</summary>
        [LoggerMessage(1209, LogLevel.Information, "Warmed up the recovery path")]
        public static partial void WarmedUp(ILogger logger, long durationMs,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        /// <summary>The warm-up failed; the operator's call will run cold, nothing else changes.</summary>
        [LoggerMessage(1210, LogLevel.Warning, "Could not warm up the recovery path")]
        public static partial void WarmUpFailed(ILogger logger, string error,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);
    }

    /// <summary>The RejoinClient that asks healthy control planes' JoinServices for this disk's key.</summary>
    internal static partial class RejoinClient
    {
        public const string Category = "rejoinClient";

        [LoggerMessage(1300, LogLevel.Information, "Starting RejoinClient")]
        public static partial void Starting(ILogger logger,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1301, LogLevel.Information, "RejoinClient stopped")]
        public static partial void Stopped(ILogger logger,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1302, LogLevel.Error, "Failed to get control-plane endpoints")]
        public static partial void FailedToGetEndpoints(ILogger logger, string error,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1303, LogLevel.Information, "Received list with JoinService endpoints")]
        public static partial void ReceivedEndpoints(ILogger logger, IReadOnlyList<string> endpoints,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1304, LogLevel.Information, "Requesting rejoin ticket")]
        public static partial void RequestingTicket(ILogger logger, string endpoint,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1305, LogLevel.Information, "Successfully retrieved rejoin ticket")]
        public static partial void RetrievedTicket(ILogger logger,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1306, LogLevel.Warning, "Failed to rejoin on endpoint")]
        public static partial void FailedOnEndpoint(ILogger logger, string error, string endpoint,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1307, LogLevel.Error, "Failed to rejoin on all endpoints")]
        public static partial void FailedOnAllEndpoints(ILogger logger,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);
    }

    /// <summary>The JoinClient of a first boot that is not the init target.</summary>
    internal static partial class JoinClient
    {
        public const string Category = "joinClient";

        [LoggerMessage(1400, LogLevel.Warning, "Failed to get control-plane endpoints")]
        public static partial void FailedToGetEndpoints(ILogger logger, string error,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1401, LogLevel.Debug, "Requesting join ticket")]
        public static partial void RequestingTicket(ILogger logger, string endpoint,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1402, LogLevel.Information, "Successfully joined the cluster")]
        public static partial void Joined(ILogger logger, string endpoint,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        /// <summary>Debug: a first-booting worker retries until a control plane is up, every failure would be a line.</summary>
        [LoggerMessage(1403, LogLevel.Debug, "Failed to join on endpoint")]
        public static partial void FailedOnEndpoint(ILogger logger, string error, string endpoint,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);
    }

    /// <summary>The init server of the init target (control-plane-0, port 9000).</summary>
    internal static partial class InitServer
    {
        public const string Category = "initServer";

        [LoggerMessage(1500, LogLevel.Information, "Received init call")]
        public static partial void ReceivedCall(ILogger logger, string peer, string clusterName,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1501, LogLevel.Warning, "Refused init call")]
        public static partial void RefusedCall(ILogger logger, string peer, string reason,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1502, LogLevel.Error, "Init failed")]
        public static partial void Failed(ILogger logger, string peer, string error,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1503, LogLevel.Information, "Init succeeded")]
        public static partial void Succeeded(ILogger logger, string clusterID,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);
    }

    /// <summary>The boot-status server (port 9990); it logs only its finished calls.</summary>
    internal static class StatusServer
    {
        public const string Category = "statusServer";
    }

    /// <summary>The workload data API (port 8080).</summary>
    internal static partial class Workload
    {
        public const string Category = "workload";

        [LoggerMessage(1600, LogLevel.Error, "Workload API refuses every request: no usable credential hash")]
        public static partial void RefusesEveryRequest(ILogger logger, string error,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);
    }

    /// <summary>The cluster API (port 6443) on control planes: mutual TLS, admin operations.</summary>
    internal static partial class ClusterApi
    {
        public const string Category = "clusterApi";

        [LoggerMessage(1700, LogLevel.Warning, "Refused cluster API call: not an admin certificate")]
        public static partial void RefusedCaller(ILogger logger, string peer, string subject,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1701, LogLevel.Information, "Node revoked")]
        public static partial void Revoked(ILogger logger, string node, string admin,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1702, LogLevel.Information, "Node removed")]
        public static partial void Removed(ILogger logger, string node, string admin, bool etcdMember,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1703, LogLevel.Warning, "Cluster API not served: this control plane holds no cluster CA")]
        public static partial void NoClusterCa(ILogger logger, string directory,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1704, LogLevel.Information, "Admin credential issued")]
        public static partial void AdminIssued(ILogger logger, string admin, string serial,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);
    }

    /// <summary>The control plane's etcd member (issue #15).</summary>
    internal static partial class Etcd
    {
        public const string Category = "etcd";

        [LoggerMessage(1800, LogLevel.Error, "Etcd member failed to start")]
        public static partial void StartFailed(ILogger logger, string member, string error,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1801, LogLevel.Information, "Etcd member running")]
        public static partial void Running(ILogger logger, string member, string state, long durationMs,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1802, LogLevel.Information, "Registered in the node registry")]
        public static partial void Registered(ILogger logger, string member,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1803, LogLevel.Information, "Recorded how the node was unlocked")]
        public static partial void RecoveryRecorded(ILogger logger, string path,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1804, LogLevel.Warning, "Could not write to the control plane")]
        public static partial void WriteFailed(ILogger logger, string what, string error,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1806, LogLevel.Warning, "Etcd member start retried")]
        public static partial void StartRetried(ILogger logger, string member, string reason,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1805, LogLevel.Information, "Etcd member stopped")]
        public static partial void Stopped(ILogger logger, string member,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);
    }

    /// <summary>The running node's master-secret rotation (issue #16 item 4): <c>Rotation/RotationLoop</c> and <c>KeyRotationStep</c>. Never key bytes.</summary>
    internal static partial class KeyRotation
    {
        public const string Category = "keyRotation";

        [LoggerMessage(1900, LogLevel.Information, "Received key rotation offer")]
        public static partial void OfferReceived(ILogger logger, int generation, string endpoint,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1901, LogLevel.Information, "Stored next master secret")]
        public static partial void NextSecretStored(ILogger logger, int generation,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1902, LogLevel.Information, "Wrote node state for the new key generation")]
        public static partial void StateWritten(ILogger logger, int generation,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1903, LogLevel.Information, "Moved state disk keyslot to the new key generation")]
        public static partial void KeyslotMoved(ILogger logger, int generation, string result,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1904, LogLevel.Information, "Confirmed key generation")]
        public static partial void Confirmed(ILogger logger, int generation, string endpoint,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1905, LogLevel.Information, "Promoted next master secret")]
        public static partial void Promoted(ILogger logger, int generation,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1906, LogLevel.Warning, "Key rotation attempt failed")]
        public static partial void AttemptFailed(ILogger logger, string endpoint, string error,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

        [LoggerMessage(1907, LogLevel.Error, "State disk keyslot opens with neither the running nor the offered key")]
        public static partial void KeyslotRefused(ILogger logger, int generation,
            [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);
    }
}
