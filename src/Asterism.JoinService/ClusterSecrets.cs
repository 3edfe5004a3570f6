using Asterism.Attestation;
using Asterism.Crypto;

namespace Asterism.JoinService;

/// <summary>
/// What a control-plane node keeps on its own encrypted state disk and serves joining nodes from: the master
/// secret, the measurement salt and the attestation policy. Only ever held by control-plane nodes.
/// </summary>
public sealed class ClusterSecrets(MasterSecret masterSecret, byte[] measurementSalt, AttestationPolicy policy) : IDisposable
{
    public MasterSecret MasterSecret { get; } = masterSecret;

    public byte[] MeasurementSalt { get; } = measurementSalt;

    public AttestationPolicy Policy { get; } = policy;

    public override string ToString() => "[redacted]";

    public void Dispose() => MasterSecret.Dispose();
}
