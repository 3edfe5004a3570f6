namespace Asterism.ControlPlane;

/// <summary>What went wrong in the control plane, for callers that map it to a status code.</summary>
public enum ControlPlaneError
{
    /// <summary>The etcd binary is missing.</summary>
    NotInstalled,

    /// <summary>etcd did not start or did not become healthy.</summary>
    StartFailed,

    /// <summary>No majority of voting members answers: reads and writes cannot be linearized.</summary>
    NoQuorum,

    /// <summary>A compare-and-swap lost against a concurrent writer (the caller may re-read and retry).</summary>
    Conflict,

    /// <summary>The named node or member does not exist.</summary>
    NotFound,

    /// <summary>The request makes no sense (bad name, removing the last member, a record that already exists).</summary>
    InvalidRequest,

    /// <summary>Stored data does not parse or exceeds its size limit.</summary>
    Corrupt,

    /// <summary>Files on disk (CA, certificates) are missing or unsafe.</summary>
    Files,
}

/// <summary>
/// A control-plane failure with a message that is safe to show: it names nodes, addresses and files, never key
/// material. <see cref="ControlPlaneError.NoQuorum"/> is the one the JoinService maps to Unavailable.
/// </summary>
public sealed class ControlPlaneException : Exception
{
    /// <summary>The message every no-quorum failure carries (the JoinService passes it on as is).</summary>
    public const string NoQuorumMessage = "control plane has no quorum";

    /// <summary>Creates the exception.</summary>
    public ControlPlaneException(ControlPlaneError error, string message, Exception? inner = null)
        : base(message, inner) => Error = error;

    /// <summary>The kind of failure.</summary>
    public ControlPlaneError Error { get; }

    internal static ControlPlaneException NoQuorum(Exception? inner = null) =>
        new(ControlPlaneError.NoQuorum, NoQuorumMessage, inner);
}
