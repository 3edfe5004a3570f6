namespace Asterism.Attestation.Simulated;

/// <summary>What a `simulated` validator accepts.</summary>
public sealed class SimulatedValidatorOptions
{
    /// <summary>Expected PCR values; only these indices are compared.</summary>
    public Measurements Measurements { get; set; } = Measurements.Empty;

    /// <summary>Trusted attestation keys as lowercase or uppercase hex SHA-256 of their SubjectPublicKeyInfo DER.</summary>
    public IList<string> TrustedKeyFingerprints { get; } = [];

    /// <summary>Trusted attestation keys as PEM "PUBLIC KEY" blocks.</summary>
    public IList<string> TrustedKeysPem { get; } = [];

    /// <summary>Accept any attestation key (local clusters only: then only PCR values and nonce binding are checked).</summary>
    public bool TrustAnyKey { get; set; }

    /// <summary>
    /// The authority (provider CA) whose identity certificates make an attestation key trusted; the document's
    /// identity is then in <see cref="AttestationFacts.Identity"/>.
    /// </summary>
    public Identities.IdentityAuthority? IdentityAuthority { get; set; }

    /// <summary>Clock for certificate validity.</summary>
    public TimeProvider Time { get; set; } = TimeProvider.System;
}
