using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Asterism.Attestation.Simulated;

/// <summary>
/// The `simulated` payload inside an <see cref="AttestationDocument"/> (v1, big-endian):
/// <code>u16 spkiLen, attestation key SPKI DER | u8 pcrCount=24, 24 × 32-byte PCR values | u8 sigLen=64, signature</code>
/// The signature (ECDSA P-256, SHA-256, r ‖ s) covers <see cref="SignedData"/>:
/// <c>"asterism simulated quote v1\0" ‖ PCR 0..23 ‖ SHA-256(userData ‖ nonce)</c>.
/// </summary>
public sealed class SimulatedQuote
{
    public const int MaxSpkiLength = 512;
    public const int SignatureLength = 64;

    private static ReadOnlySpan<byte> Domain => "asterism simulated quote v1\0"u8;

    public SimulatedQuote(byte[] publicKeySpki, byte[][] pcrs, byte[] signature)
    {
        PublicKeySpki = publicKeySpki;
        Pcrs = pcrs;
        Signature = signature;
    }

    public byte[] PublicKeySpki { get; }
    public byte[][] Pcrs { get; }
    public byte[] Signature { get; }

    /// <summary>The bytes the attestation key signs.</summary>
    public static byte[] SignedData(byte[][] pcrs, ReadOnlySpan<byte> userData, ReadOnlySpan<byte> nonce)
    {
        var data = new byte[Domain.Length + SimulatedPcrBank.Count * SimulatedPcrBank.DigestLength + 32];
        Domain.CopyTo(data);
        var pos = Domain.Length;
        foreach (var pcr in pcrs)
        {
            pcr.CopyTo(data, pos);
            pos += SimulatedPcrBank.DigestLength;
        }
        ExtraData(userData, nonce).CopyTo(data, pos);
        return data;
    }

    /// <summary>SHA-256(userData ‖ nonce), as TPM quotes carry in qualifyingData.</summary>
    public static byte[] ExtraData(ReadOnlySpan<byte> userData, ReadOnlySpan<byte> nonce)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(userData);
        hash.AppendData(nonce);
        return hash.GetHashAndReset();
    }

    public byte[] Encode()
    {
        var buffer = new byte[2 + PublicKeySpki.Length + 1 + (SimulatedPcrBank.Count * SimulatedPcrBank.DigestLength) + 1 + Signature.Length];
        var pos = 0;
        BinaryPrimitives.WriteUInt16BigEndian(buffer, (ushort)PublicKeySpki.Length);
        pos += 2;
        PublicKeySpki.CopyTo(buffer, pos);
        pos += PublicKeySpki.Length;
        buffer[pos++] = SimulatedPcrBank.Count;
        foreach (var pcr in Pcrs)
        {
            pcr.CopyTo(buffer, pos);
            pos += pcr.Length;
        }
        buffer[pos++] = (byte)Signature.Length;
        Signature.CopyTo(buffer, pos);
        return buffer;
    }

    public static bool TryParse(ReadOnlySpan<byte> payload, out SimulatedQuote quote, out string error)
    {
        quote = null!;
        var reader = new BoundedReader(payload);
        if (!reader.TryReadU16Prefixed(out var spki) || spki.Length is 0 or > MaxSpkiLength)
        {
            error = "bad attestation key field";
            return false;
        }
        if (!reader.TryReadU8(out var count) || count != SimulatedPcrBank.Count)
        {
            error = $"expected {SimulatedPcrBank.Count} PCR values";
            return false;
        }
        var pcrs = new byte[SimulatedPcrBank.Count][];
        for (var i = 0; i < pcrs.Length; i++)
        {
            if (!reader.TryReadBytes(SimulatedPcrBank.DigestLength, out var pcr))
            {
                error = "truncated PCR values";
                return false;
            }
            pcrs[i] = pcr.ToArray();
        }
        if (!reader.TryReadU8Prefixed(out var signature) || signature.Length != SignatureLength)
        {
            error = "bad signature field";
            return false;
        }
        if (!reader.AtEnd)
        {
            error = "trailing bytes after signature";
            return false;
        }
        quote = new SimulatedQuote(spki.ToArray(), pcrs, signature.ToArray());
        error = "";
        return true;
    }
}
