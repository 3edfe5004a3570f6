using Grpc.Core;

namespace Asterism.Node.Unlock;

/// <summary>What <see cref="KeyRace.OfferAsync"/> made of a delivered key.</summary>
public enum KeyVerdict
{
    Accepted,
    DiskKeyRejected,
    MeasurementSecretRejected,
    AlreadyRecovered,

    /// <summary>The key opened the disk but the node state on it could not be read.</summary>
    StoreUnreadable,
}

/// <summary>The one mapping from a key verdict to what callers are told.</summary>
public static class KeyVerdicts
{
    /// <summary>
    /// The gRPC status the RecoveryServer ends a recover call with (the CLI tells a wrong key from a recovered node by
    /// it), and whose detail the RejoinClient reports for a refused rejoin ticket. Details are generic: the reason is
    /// logged locally.
    /// </summary>
    public static Status ToStatus(this KeyVerdict verdict) => verdict switch
    {
        KeyVerdict.Accepted => Status.DefaultSuccess,
        KeyVerdict.AlreadyRecovered => new Status(StatusCode.Unavailable, "node already recovered"),
        KeyVerdict.StoreUnreadable => new Status(StatusCode.FailedPrecondition, "state disk unusable"),
        KeyVerdict.MeasurementSecretRejected => new Status(StatusCode.FailedPrecondition, "measurement secret rejected"),
        KeyVerdict.DiskKeyRejected => new Status(StatusCode.FailedPrecondition, "state disk key rejected"),
        _ => throw new ArgumentOutOfRangeException(nameof(verdict), verdict, null),
    };
}
