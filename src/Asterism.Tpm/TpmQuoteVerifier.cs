using System.Security.Cryptography;

namespace Asterism.Tpm;

/// <summary>Outcome of checking a quote; every refusal has its own value.</summary>
public enum TpmQuoteStatus
{
    Valid = 0,
    Malformed,
    KeyNotRestricted,
    BadSignature,
    ExtraDataMismatch,
    PcrSelectionMismatch,
    PcrDigestMismatch,
}

/// <summary>The result of <see cref="TpmQuoteVerifier.Verify"/>: a status, a reason, and the parsed attestation when it parsed.</summary>
public sealed record TpmQuoteVerification(TpmQuoteStatus Status, string Message, TpmQuoteAttestation? Attestation)
{
    public bool IsValid => Status == TpmQuoteStatus.Valid;

    public override string ToString() => IsValid ? "valid" : $"{Status}: {Message}";
}

/// <summary>
/// Pure functions a validator uses to check a TPM2_Quote without a TPM: parse, verify the ECDSA signature over
/// SHA-256(TPMS_ATTEST), compare extraData, and recompute the PCR digest from the PCR values sent along.
/// </summary>
public static class TpmQuoteVerifier
{
    /// <summary>
    /// Checks <paramref name="attest"/> (TPMS_ATTEST bytes) and <paramref name="signature"/> (TPMT_SIGNATURE) against
    /// <paramref name="key"/>, the expected qualifying data and SHA-256 PCR values. Expected failures, malformed input
    /// included, are statuses, never exceptions. The PCR selection in the quote must equal the PCR values supplied.
    /// </summary>
    /// <param name="importedKey">
    /// <paramref name="key"/> already imported, to skip importing it again (about two verifications' worth under
    /// OpenSSL 3). The caller guarantees it is the same key and that no other thread uses it meanwhile.
    /// </param>
    public static TpmQuoteVerification Verify(
        TpmEccPublicKey key,
        ReadOnlySpan<byte> attest,
        ReadOnlySpan<byte> signature,
        ReadOnlySpan<byte> expectedExtraData,
        IReadOnlyDictionary<int, byte[]> sha256PcrValues,
        ECDsa? importedKey = null)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(sha256PcrValues);
        if (!key.IsRestrictedSigningKey)
        {
            return new(TpmQuoteStatus.KeyNotRestricted, "the key is not a restricted, fixedTPM signing key", null);
        }
        TpmQuoteAttestation parsed;
        TpmEcdsaSignature sig;
        try
        {
            parsed = TpmQuoteAttestation.Parse(attest);
            sig = TpmEcdsaSignature.Parse(signature);
        }
        catch (TpmFormatException e)
        {
            return new(TpmQuoteStatus.Malformed, e.Message, null);
        }
        bool signed;
        try
        {
            if (importedKey is null)
            {
                signed = VerifySignature(key, attest, sig);
            }
            else
            {
                signed = VerifySignature(importedKey, attest, sig);
            }
        }
        catch (TpmFormatException e)
        {
            return new(TpmQuoteStatus.Malformed, e.Message, parsed);
        }
        if (!signed)
        {
            return new(TpmQuoteStatus.BadSignature, "the quote signature does not verify with the attestation key", parsed);
        }
        if (!CryptographicOperations.FixedTimeEquals(parsed.ExtraData, expectedExtraData))
        {
            return new(TpmQuoteStatus.ExtraDataMismatch, "the quote's qualifying data differs from the expected value", parsed);
        }
        if (parsed.PcrSelections.Count != 1 || parsed.PcrSelections[0].HashAlg != TpmAlg.Sha256)
        {
            return new(TpmQuoteStatus.PcrSelectionMismatch, "the quote does not select exactly the SHA-256 bank", parsed);
        }
        var selected = parsed.PcrSelections[0].Indices;
        if (selected.Count != sha256PcrValues.Count || selected.Any(i => !sha256PcrValues.ContainsKey(i)))
        {
            return new(TpmQuoteStatus.PcrSelectionMismatch,
                $"the quote selects PCRs [{string.Join(',', selected)}], values were sent for [{string.Join(',', sha256PcrValues.Keys.Order())}]", parsed);
        }
        byte[] digest;
        try
        {
            digest = ComputePcrDigest(parsed.PcrSelections, sha256PcrValues);
        }
        catch (TpmFormatException e)
        {
            return new(TpmQuoteStatus.Malformed, e.Message, parsed);
        }
        if (!CryptographicOperations.FixedTimeEquals(digest, parsed.PcrDigest))
        {
            return new(TpmQuoteStatus.PcrDigestMismatch, "the PCR values sent do not hash to the quoted PCR digest", parsed);
        }
        return new(TpmQuoteStatus.Valid, "", parsed);
    }

    /// <summary>Verifies an ECDSA P-256 signature over SHA-256(<paramref name="message"/>).</summary>
    public static bool VerifySignature(TpmEccPublicKey key, ReadOnlySpan<byte> message, TpmEcdsaSignature signature)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(signature);
        if (signature.HashAlg != TpmAlg.Sha256)
        {
            return false;
        }
        using var ecdsa = key.CreateECDsa();
        return VerifySignature(ecdsa, message, signature);
    }

    /// <summary>Verifies an ECDSA P-256 signature over SHA-256(<paramref name="message"/>) with an imported key.</summary>
    public static bool VerifySignature(ECDsa key, ReadOnlySpan<byte> message, TpmEcdsaSignature signature)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(signature);
        if (signature.HashAlg != TpmAlg.Sha256)
        {
            return false;
        }
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(message, hash);
        return key.VerifyHash(hash, signature.ToP1363(), DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
    }

    /// <summary>
    /// SHA-256 over the selected PCR values in selection order (banks in list order, indices ascending), the value
    /// TPM2_Quote puts in pcrDigest. Only SHA-256 banks are supported; each value must be 32 bytes.
    /// </summary>
    public static byte[] ComputePcrDigest(IReadOnlyList<TpmPcrSelection> selections, IReadOnlyDictionary<int, byte[]> sha256PcrValues)
    {
        ArgumentNullException.ThrowIfNull(selections);
        ArgumentNullException.ThrowIfNull(sha256PcrValues);
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var bank in selections)
        {
            if (bank.HashAlg != TpmAlg.Sha256)
            {
                throw new TpmFormatException($"PCR bank 0x{bank.HashAlg:X4} is not SHA-256");
            }
            foreach (var i in bank.Indices)
            {
                if (!sha256PcrValues.TryGetValue(i, out var v) || v is null || v.Length != 32)
                {
                    throw new TpmFormatException($"no 32-byte value for PCR {i}");
                }
                h.AppendData(v);
            }
        }
        return h.GetHashAndReset();
    }
}
