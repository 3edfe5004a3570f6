using System.Security.Cryptography;
using Microsoft.Extensions.Logging;

namespace Asterism.Attestation.Simulated;

/// <summary>
/// Validates `simulated` documents: envelope, nonce, key trust (identity certificate or pin), signature, then measurements. Every outcome is a
/// verdict and is logged with the variant name, the reason and the attestation key fingerprint.
/// </summary>
public sealed class SimulatedValidator : SynchronousAttestationValidator
{
    private readonly Measurements _measurements;
    private readonly KeyTrust _trust;
    private readonly VerificationKeyCache _keys = new();

    public SimulatedValidator(SimulatedValidatorOptions options, ILogger? logger = null)
        : base(logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _measurements = options.Measurements ?? Measurements.Empty;
        var pinned = new List<string>(options.TrustedKeyFingerprints);
        foreach (var pem in options.TrustedKeysPem)
        {
            using var key = ECDsa.Create();
            try
            {
                key.ImportFromPem(pem);
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException("a trusted key PEM holds no public key", nameof(options), e);
            }
            pinned.Add(SimulatedAttestationKey.FingerprintOf(key.ExportSubjectPublicKeyInfo()));
        }
        _trust = new KeyTrust(pinned, options.IdentityAuthority, options.TrustAnyKey, options.Time, nameof(options));
    }

    public override AttestationVariant Variant => AttestationVariant.Simulated;

    protected override (AttestationVerdict Verdict, string Fingerprint) CheckDocument(AttestationDocument doc, ReadOnlySpan<byte> nonce)
    {
        if (!SimulatedQuote.TryParse(doc.Payload, out var quote, out var error))
        {
            return (AttestationVerdict.Refuse(AttestationFailure.Malformed, "malformed simulated quote: " + error), UnknownKey);
        }
        var fingerprint = SimulatedAttestationKey.FingerprintOf(quote.PublicKeySpki);
        if (!CryptographicOperations.FixedTimeEquals(doc.Nonce, nonce))
        {
            return (AttestationVerdict.Refuse(AttestationFailure.NonceMismatch, "document is bound to another nonce (replayed or stale)"), fingerprint);
        }
        if (!_trust.IsTrusted(doc, quote.PublicKeySpki, fingerprint, out var identity, out var untrusted))
        {
            return (AttestationVerdict.Refuse(AttestationFailure.UntrustedKey, untrusted), fingerprint);
        }
        var key = _keys.Get(quote.PublicKeySpki, fingerprint);
        if (key is null)
        {
            return (AttestationVerdict.Refuse(AttestationFailure.Malformed, "attestation key is not an ECDSA P-256 key"), fingerprint);
        }
        var signed = SimulatedQuote.SignedData(quote.Pcrs, doc.UserData, doc.Nonce);
        if (!key.Verify(signed, quote.Signature))
        {
            return (AttestationVerdict.Refuse(AttestationFailure.BadSignature, "quote signature does not verify"), fingerprint);
        }
        var pcrs = new Dictionary<int, byte[]>(quote.Pcrs.Length);
        for (var i = 0; i < quote.Pcrs.Length; i++)
        {
            pcrs[i] = quote.Pcrs[i];
        }
        var comparison = _measurements.Compare(pcrs);
        if (!comparison.Passed)
        {
            return (AttestationVerdict.Refuse(AttestationFailure.MeasurementMismatch, comparison.ErrorText), fingerprint);
        }
        var facts = new AttestationFacts(Variant, pcrs, fingerprint, identity);
        return (AttestationVerdict.Accept(doc.UserData, facts, comparison.Warnings), fingerprint);
    }
}
