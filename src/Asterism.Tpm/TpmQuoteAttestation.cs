namespace Asterism.Tpm;

/// <summary>TPMS_CLOCK_INFO from an attestation structure.</summary>
public sealed record TpmClockInfo(ulong Clock, uint ResetCount, uint RestartCount, bool Safe);

/// <summary>
/// A TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE, parsed from untrusted bytes (the signed message of a quote).
/// </summary>
public sealed record TpmQuoteAttestation(
    byte[] QualifiedSigner,
    byte[] ExtraData,
    TpmClockInfo ClockInfo,
    ulong FirmwareVersion,
    IReadOnlyList<TpmPcrSelection> PcrSelections,
    byte[] PcrDigest)
{
    /// <summary>Largest TPMS_ATTEST accepted (a quote is ~150 bytes; TPM2B_ATTEST's union is far smaller than this).</summary>
    public const int MaxAttestSize = 1024;

    /// <summary>Parses TPMS_ATTEST bytes (the content of TPM2B_ATTEST, without its size prefix).</summary>
    public static TpmQuoteAttestation Parse(ReadOnlySpan<byte> attest)
    {
        if (attest.Length > MaxAttestSize)
        {
            throw new TpmFormatException($"attestation has {attest.Length} bytes, at most {MaxAttestSize} allowed");
        }
        var r = new TpmReader(attest);
        var magic = r.ReadUInt32();
        if (magic != TpmConst.GeneratedValue)
        {
            throw new TpmFormatException($"attestation magic 0x{magic:X8} is not TPM_GENERATED_VALUE");
        }
        var type = r.ReadUInt16();
        if (type != TpmConst.StAttestQuote)
        {
            throw new TpmFormatException($"attestation type 0x{type:X4} is not TPM_ST_ATTEST_QUOTE");
        }
        var signer = r.ReadSized(TpmConst.MaxName, "qualifiedSigner").ToArray();
        var extra = r.ReadSized(TpmConst.MaxDigest + 2, "extraData").ToArray();
        var clock = new TpmClockInfo(r.ReadUInt64(), r.ReadUInt32(), r.ReadUInt32(), ReadYesNo(ref r));
        var firmware = r.ReadUInt64();
        var selections = TpmPcrSelection.ReadList(ref r);
        var digest = r.ReadSized(TpmConst.MaxDigest, "pcrDigest").ToArray();
        r.ExpectEnd("TPMS_ATTEST");
        return new TpmQuoteAttestation(signer, extra, clock, firmware, selections, digest);
    }

    private static bool ReadYesNo(ref TpmReader r) => r.ReadByte() switch
    {
        0 => false,
        1 => true,
        var b => throw new TpmFormatException($"TPMI_YES_NO value {b}"),
    };
}

/// <summary>A TPMT_SIGNATURE with an ECDSA signature: <c>0018 hashAlg TPM2B r TPM2B s</c>.</summary>
public sealed record TpmEcdsaSignature(ushort HashAlg, byte[] R, byte[] S)
{
    private const int MaxSignatureSize = 256;

    /// <summary>Parses a complete TPMT_SIGNATURE; only ECDSA with SHA-256 over P-256 is accepted.</summary>
    public static TpmEcdsaSignature Parse(ReadOnlySpan<byte> signature)
    {
        if (signature.Length > MaxSignatureSize)
        {
            throw new TpmFormatException($"signature has {signature.Length} bytes, at most {MaxSignatureSize} allowed");
        }
        var r = new TpmReader(signature);
        var result = Read(ref r);
        r.ExpectEnd("TPMT_SIGNATURE");
        return result;
    }

    internal static TpmEcdsaSignature Read(ref TpmReader r)
    {
        var alg = r.ReadUInt16();
        if (alg != TpmAlg.Ecdsa)
        {
            throw new TpmFormatException($"signature algorithm 0x{alg:X4} is not TPM_ALG_ECDSA");
        }
        var hash = r.ReadUInt16();
        if (hash != TpmAlg.Sha256)
        {
            throw new TpmFormatException($"signature hash 0x{hash:X4} is not SHA-256");
        }
        var rv = r.ReadSized(66, "ECDSA r").ToArray();
        var sv = r.ReadSized(66, "ECDSA s").ToArray();
        return new TpmEcdsaSignature(hash, rv, sv);
    }

    /// <summary>r ‖ s, each left-padded to 32 bytes (IEEE P1363), as .NET's ECDsa verifies.</summary>
    public byte[] ToP1363()
    {
        var result = new byte[64];
        Place(R, result.AsSpan(0, 32));
        Place(S, result.AsSpan(32, 32));
        return result;
    }

    private static void Place(byte[] value, Span<byte> target)
    {
        var v = value.AsSpan();
        while (v.Length > 0 && v[0] == 0)
        {
            v = v[1..];
        }
        if (v.Length > target.Length)
        {
            throw new TpmFormatException("ECDSA component longer than the P-256 field");
        }
        v.CopyTo(target[(target.Length - v.Length)..]);
    }
}
