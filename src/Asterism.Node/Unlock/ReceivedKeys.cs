using Asterism.Crypto;

namespace Asterism.Node.Unlock;

/// <summary>A disk key and measurement secret delivered by the RecoveryServer or the RejoinClient, and who sent it.</summary>
public sealed class ReceivedKeys(SecretBytes diskKey, SecretBytes measurementSecret, string source) : IDisposable
{
    public SecretBytes DiskKey { get; } = diskKey;

    public SecretBytes MeasurementSecret { get; } = measurementSecret;

    /// <summary>"recovery" or "rejoin", for the log.</summary>
    public string Source { get; } = source;

    public override string ToString() => $"keys from {Source} [redacted]";

    public void Dispose()
    {
        DiskKey.Dispose();
        MeasurementSecret.Dispose();
    }
}
