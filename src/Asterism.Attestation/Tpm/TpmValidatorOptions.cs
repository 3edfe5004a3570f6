namespace Asterism.Attestation.Tpm;

/// <summary>What a `tpm` validator accepts.</summary>
public sealed class TpmValidatorOptions
{
    /// <summary>Expected PCR values; only these indices are compared (the quote covers 0-15).</summary>
    public Measurements Measurements { get; set; } = Measurements.Empty;

    /// <summary>Trusted attestation keys: hex SHA-256 of each key's SubjectPublicKeyInfo DER.</summary>
    public IList<string> TrustedKeyFingerprints { get; } = [];

    /// <summary>
    /// Accept any attestation key that is a restricted TPM signing key (local swtpm clusters, like Constellation's
    /// QEMU variant): then the PCR values, the nonce binding and the quote's self-consistency are what is checked.
    /// </summary>
    public bool TrustAnyKey { get; set; }

    /// <summary>
    /// The authority (provider CA) whose identity certificates make an attestation key trusted; the document's
    /// identity is then in <see cref="AttestationFacts.Identity"/>.
    /// </summary>
    public Identities.IdentityAuthority? IdentityAuthority { get; set; }

    /// <summary>Clock for certificate validity.</summary>
    public TimeProvider Time { get; set; } = TimeProvider.System;
}
