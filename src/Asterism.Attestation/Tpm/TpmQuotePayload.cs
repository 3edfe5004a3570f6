using System.Buffers.Binary;
using Asterism.Tpm;

namespace Asterism.Attestation.Tpm;

/// <summary>
/// The `tpm` payload inside an <see cref="AttestationDocument"/> (v1, big-endian):
/// <code>u16 len, AK TPMT_PUBLIC | u16 len, TPMS_ATTEST | u16 len, TPMT_SIGNATURE | u8 16, PCR 0..15 (32 bytes each, SHA-256 bank) | nothing after</code>
/// The bytes prove nothing by themselves: <see cref="TpmValidator"/> checks the signature, qualifying data and PCR digest.
/// </summary>
public sealed class TpmQuotePayload
{
    /// <summary>The quoted PCRs: 0-15 of the SHA-256 bank (16-23 are for runtime use and not part of boot state).</summary>
    public const int PcrCount = 16;
    public const int PcrLength = 32;
    public const int MaxSignatureLength = 256;

    public TpmQuotePayload(byte[] attestationKeyPublic, byte[] attest, byte[] signature, byte[][] pcrs)
    {
        ArgumentNullException.ThrowIfNull(attestationKeyPublic);
        ArgumentNullException.ThrowIfNull(attest);
        ArgumentNullException.ThrowIfNull(signature);
        ArgumentNullException.ThrowIfNull(pcrs);
        if (attestationKeyPublic.Length is 0 or > TpmEccPublicKey.MaxPublicAreaSize
            || attest.Length is 0 or > TpmQuoteAttestation.MaxAttestSize
            || signature.Length is 0 or > MaxSignatureLength
            || pcrs.Length != PcrCount || pcrs.Any(p => p is null || p.Length != PcrLength))
        {
            throw new ArgumentException("a field of the tpm payload is empty or exceeds its limit");
        }
        AttestationKeyPublic = attestationKeyPublic;
        Attest = attest;
        Signature = signature;
        Pcrs = pcrs;
    }

    /// <summary>The attestation key's TPMT_PUBLIC.</summary>
    public byte[] AttestationKeyPublic { get; }

    /// <summary>TPMS_ATTEST, the signed message of TPM2_Quote.</summary>
    public byte[] Attest { get; }

    /// <summary>TPMT_SIGNATURE over SHA-256(<see cref="Attest"/>).</summary>
    public byte[] Signature { get; }

    /// <summary>SHA-256 PCR values 0..15 in index order.</summary>
    public byte[][] Pcrs { get; }

    /// <summary>The PCR values as index → value.</summary>
    public Dictionary<int, byte[]> PcrMap()
    {
        var map = new Dictionary<int, byte[]>(PcrCount);
        for (var i = 0; i < PcrCount; i++)
        {
            map[i] = Pcrs[i];
        }
        return map;
    }

    public byte[] Encode()
    {
        var buffer = new byte[2 + AttestationKeyPublic.Length + 2 + Attest.Length + 2 + Signature.Length + 1 + (PcrCount * PcrLength)];
        var span = buffer.AsSpan();
        var pos = WriteU16Prefixed(span, 0, AttestationKeyPublic);
        pos = WriteU16Prefixed(span, pos, Attest);
        pos = WriteU16Prefixed(span, pos, Signature);
        span[pos++] = PcrCount;
        foreach (var pcr in Pcrs)
        {
            pcr.CopyTo(span[pos..]);
            pos += PcrLength;
        }
        return buffer;
    }

    /// <summary>Parses untrusted bytes; never throws, reports the first problem in <paramref name="error"/>.</summary>
    public static bool TryParse(ReadOnlySpan<byte> payload, out TpmQuotePayload quote, out string error)
    {
        quote = null!;
        var reader = new BoundedReader(payload);
        if (!reader.TryReadU16Prefixed(out var akPublic) || akPublic.Length is 0 or > TpmEccPublicKey.MaxPublicAreaSize)
        {
            error = "bad attestation key field";
            return false;
        }
        if (!reader.TryReadU16Prefixed(out var attest) || attest.Length is 0 or > TpmQuoteAttestation.MaxAttestSize)
        {
            error = "bad quote field";
            return false;
        }
        if (!reader.TryReadU16Prefixed(out var signature) || signature.Length is 0 or > MaxSignatureLength)
        {
            error = "bad signature field";
            return false;
        }
        if (!reader.TryReadU8(out var count) || count != PcrCount)
        {
            error = $"expected {PcrCount} PCR values";
            return false;
        }
        var pcrs = new byte[PcrCount][];
        for (var i = 0; i < PcrCount; i++)
        {
            if (!reader.TryReadBytes(PcrLength, out var pcr))
            {
                error = "truncated PCR values";
                return false;
            }
            pcrs[i] = pcr.ToArray();
        }
        if (!reader.AtEnd)
        {
            error = "trailing bytes after the PCR values";
            return false;
        }
        quote = new TpmQuotePayload(akPublic.ToArray(), attest.ToArray(), signature.ToArray(), pcrs);
        error = "";
        return true;
    }

    private static int WriteU16Prefixed(Span<byte> span, int pos, byte[] value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(span[pos..], (ushort)value.Length);
        value.CopyTo(span[(pos + 2)..]);
        return pos + 2 + value.Length;
    }
}
