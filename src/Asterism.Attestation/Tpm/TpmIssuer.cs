using System.Security.Cryptography;
using Asterism.Tpm;

namespace Asterism.Attestation.Tpm;

/// <summary>
/// Issues `tpm` documents: TPM2_Quote of PCRs 0-15 (SHA-256 bank) by the node's attestation key with
/// qualifyingData = SHA-256(userData ‖ nonce), sent with the key's public area and the PCR values it covers.
/// The key stays owned by the caller (it is flushed when the caller disposes it). The key's identity certificate
/// (DER, issued by the provider after credential activation) travels in the document when the node has one.
/// </summary>
public sealed class TpmIssuer(TpmAttestationKey key, byte[]? identityCertificate = null) : IAttestationIssuer
{
    private readonly byte[] _identity = identityCertificate ?? [];
    private static readonly int[] QuotedPcrs = [.. Enumerable.Range(0, TpmQuotePayload.PcrCount)];

    private readonly TpmAttestationKey _key = key ?? throw new ArgumentNullException(nameof(key));

    public AttestationVariant Variant => AttestationVariant.Tpm;

    /// <summary>SHA-256(userData ‖ nonce): the quote's qualifying data.</summary>
    public static byte[] QualifyingData(ReadOnlySpan<byte> userData, ReadOnlySpan<byte> nonce)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(userData);
        hash.AppendData(nonce);
        return hash.GetHashAndReset();
    }

    /// <summary>Quotes and wraps the quote; throws <see cref="TpmException"/> when the TPM fails.</summary>
    public async ValueTask<byte[]> IssueAsync(ReadOnlyMemory<byte> userData, ReadOnlyMemory<byte> nonce, CancellationToken cancellationToken)
    {
        if (userData.Length > AttestationDocument.MaxUserDataLength || nonce.Length > AttestationDocument.MaxNonceLength)
        {
            throw new ArgumentException($"user data and nonce must be at most {AttestationDocument.MaxUserDataLength} bytes each");
        }
        var quote = await _key.QuoteAsync(QualifyingData(userData.Span, nonce.Span), QuotedPcrs, cancellationToken).ConfigureAwait(false);
        var pcrs = new byte[TpmQuotePayload.PcrCount][];
        foreach (var index in QuotedPcrs)
        {
            pcrs[index] = quote.Pcrs[index];
        }
        var payload = new TpmQuotePayload(_key.PublicKey.PublicArea.ToArray(), quote.Attest, quote.Signature, pcrs);
        return new AttestationDocument(Variant.Name, userData.Span, nonce.Span, _identity, payload.Encode()).Encode();
    }
}
