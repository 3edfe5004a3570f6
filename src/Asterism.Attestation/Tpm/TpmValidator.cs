using System.Collections.Concurrent;
using System.Security.Cryptography;
using Asterism.Tpm;
using Microsoft.Extensions.Logging;

namespace Asterism.Attestation.Tpm;

/// <summary>
/// Validates `tpm` documents: envelope, nonce, the quote (magic, type, extraData = SHA-256(userData ‖ nonce),
/// ECDSA signature under a restricted attestation key, PCR selection 0-15 of SHA-256, PCR digest against the values
/// sent), then key trust and measurements. Every outcome is a verdict and is logged with the variant name.
/// </summary>
public sealed class TpmValidator : SynchronousAttestationValidator
{
    private readonly Measurements _measurements;
    private readonly KeyTrust _trust;
    private readonly ConcurrentDictionary<string, KnownKey> _keys = new(StringComparer.Ordinal);

    private const int KeyCacheCapacity = 256;

    public TpmValidator(TpmValidatorOptions options, ILogger? logger = null)
        : base(logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _measurements = options.Measurements ?? Measurements.Empty;
        _trust = new KeyTrust(options.TrustedKeyFingerprints, options.IdentityAuthority, options.TrustAnyKey, options.Time, nameof(options));
    }

    public override AttestationVariant Variant => AttestationVariant.Tpm;

    /// <summary>The fingerprint <c>trustedKeys</c> lists for a key: lowercase hex SHA-256 of its SubjectPublicKeyInfo DER.</summary>
    public static string FingerprintOf(TpmEccPublicKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return Convert.ToHexStringLower(SHA256.HashData(key.ExportSubjectPublicKeyInfo()));
    }

    protected override (AttestationVerdict Verdict, string Fingerprint) CheckDocument(AttestationDocument doc, ReadOnlySpan<byte> nonce)
    {
        if (!TpmQuotePayload.TryParse(doc.Payload, out var payload, out var error))
        {
            return (Refuse(AttestationFailure.Malformed, "malformed tpm quote: " + error), UnknownKey);
        }
        KnownKey known;
        try
        {
            known = KeyFor(payload.AttestationKeyPublic);
        }
        catch (TpmFormatException e)
        {
            return (Refuse(AttestationFailure.Malformed, "malformed attestation key: " + e.Message), UnknownKey);
        }
        var remembered = false;
        try
        {
            var (verdict, keep) = CheckWithKey(doc, payload, known, nonce);
            remembered = known.IsCached || (keep && Remember(known));
            return (verdict, known.Fingerprint);
        }
        finally
        {
            if (!remembered)
            {
                known.Dispose();
            }
        }
    }

    /// <summary>The checks that need the key; Keep: the key proved itself (signed this quote, and is trusted).</summary>
    private (AttestationVerdict Verdict, bool Keep) CheckWithKey(AttestationDocument doc, TpmQuotePayload payload, KnownKey known, ReadOnlySpan<byte> nonce)
    {
        var key = known.Key;
        var fingerprint = known.Fingerprint;
        if (!CryptographicOperations.FixedTimeEquals(doc.Nonce, nonce))
        {
            return (Refuse(AttestationFailure.NonceMismatch, "document is bound to another nonce (replayed or stale)"), false);
        }
        if (!MatchesAttestationKeyTemplate(key))
        {
            return (Refuse(AttestationFailure.KeyNotRestricted,
                "the attestation key is not Asterism's AK (restricted ECDSA P-256/SHA-256 signing key, fixedTPM, sensitiveDataOrigin, noDA)"), false);
        }
        var pcrs = payload.PcrMap();
        TpmQuoteVerification quote;
        lock (known.Lock)
        {
            quote = TpmQuoteVerifier.Verify(key, payload.Attest, payload.Signature, TpmIssuer.QualifyingData(doc.UserData, doc.Nonce), pcrs, known.Imported);
        }
        var failure = quote.Status switch
        {
            TpmQuoteStatus.Valid => AttestationFailure.None,
            TpmQuoteStatus.KeyNotRestricted => AttestationFailure.KeyNotRestricted,
            TpmQuoteStatus.BadSignature => AttestationFailure.BadSignature,
            TpmQuoteStatus.ExtraDataMismatch => AttestationFailure.UserDataMismatch,
            TpmQuoteStatus.PcrSelectionMismatch => AttestationFailure.PcrSelectionMismatch,
            TpmQuoteStatus.PcrDigestMismatch => AttestationFailure.PcrDigestMismatch,
            _ => AttestationFailure.Malformed,
        };
        if (failure != AttestationFailure.None)
        {
            var detail = quote.Status == TpmQuoteStatus.ExtraDataMismatch
                ? "the quote's qualifying data is not SHA-256(userData ‖ nonce) of this document"
                : quote.Message;
            return (Refuse(failure, detail), false);
        }
        if (!_trust.IsTrusted(doc, known.Spki, fingerprint, out var identity, out var untrusted))
        {
            return (Refuse(AttestationFailure.UntrustedKey, untrusted), false);
        }
        var comparison = _measurements.Compare(pcrs);
        if (!comparison.Passed)
        {
            return (Refuse(AttestationFailure.MeasurementMismatch, comparison.ErrorText), true);
        }
        var facts = new AttestationFacts(Variant, pcrs, fingerprint, identity);
        return (AttestationVerdict.Accept(doc.UserData, facts, comparison.Warnings), true);
    }

    /// <summary>
    /// The key's public area must be exactly the AK template with its point filled in: no other attributes, scheme or
    /// policy. That keeps documents canonical (no field of the key can change without changing the verdict) and
    /// refuses keys the TPM would let sign outside data.
    /// </summary>
    private static bool MatchesAttestationKeyTemplate(TpmEccPublicKey key)
    {
        var template = TpmAttestationKey.Template();
        var expected = new byte[template.Length - 4 + 2 + 32 + 2 + 32];
        template.AsSpan(0, template.Length - 4).CopyTo(expected);
        var pos = template.Length - 4;
        expected[pos + 1] = 32;
        key.X.CopyTo(expected, pos + 2);
        expected[pos + 35] = 32;
        key.Y.CopyTo(expected, pos + 36);
        return key.IsRestrictedSigningKey && key.PublicArea.SequenceEqual(expected);
    }

    /// <summary>
    /// The parsed key, its fingerprint and its imported form, by the exact public-area bytes. Parsing checks the point
    /// by importing it, the fingerprint exports it again and the signature check imports it a third time: ~0.1 ms
    /// (about two verifications) each under OpenSSL 3, for the same few node AKs over and over. A key is only
    /// remembered once it has signed a valid quote and is trusted (see <see cref="Remember"/>), so strangers cannot
    /// fill the cache; it holds public keys only and is bounded.
    /// </summary>
    private KnownKey KeyFor(byte[] publicArea)
    {
        var id = Convert.ToHexString(SHA256.HashData(publicArea));
        if (_keys.TryGetValue(id, out var known) && known.Key.PublicArea.SequenceEqual(publicArea))
        {
            return known;
        }
        var key = TpmEccPublicKey.Parse(publicArea);
        var spki = key.ExportSubjectPublicKeyInfo();
        return new KnownKey(id, key, spki, Convert.ToHexStringLower(SHA256.HashData(spki)), key.CreateECDsa(), isCached: false);
    }

    /// <summary>Keeps a key that proved itself; false (the caller disposes it) when full or another thread won.</summary>
    private bool Remember(KnownKey known)
    {
        if (_keys.Count >= KeyCacheCapacity)
        {
            return false;
        }
        var cached = new KnownKey(known.Id, known.Key, known.Spki, known.Fingerprint, known.Imported, isCached: true);
        return _keys.TryAdd(known.Id, cached);
    }

    private sealed class KnownKey(string id, TpmEccPublicKey key, byte[] spki, string fingerprint, ECDsa imported, bool isCached) : IDisposable
    {
        public string Id { get; } = id;

        public TpmEccPublicKey Key { get; } = key;

        /// <summary>The key as DER SubjectPublicKeyInfo: what an identity certificate certifies.</summary>
        public byte[] Spki { get; } = spki;

        public string Fingerprint { get; } = fingerprint;

        /// <summary>Only used under <see cref="Lock"/>: ECDsa instances are not documented thread-safe.</summary>
        public ECDsa Imported { get; } = imported;

        public Lock Lock { get; } = new();

        public bool IsCached { get; } = isCached;

        public void Dispose() => Imported.Dispose();
    }

    private static AttestationVerdict Refuse(AttestationFailure failure, string message) => AttestationVerdict.Refuse(failure, message);
}
