using System.Security.Cryptography;

namespace Asterism.Tpm;

/// <summary>
/// An ECC NIST P-256 TPMT_PUBLIC parsed from untrusted bytes: the point, the attributes, the signing scheme and
/// (for a storage key such as an ECC endorsement key) the symmetric definition and policy.
/// Keeps the exact bytes so the TPM object name (nameAlg ‖ SHA-256(TPMT_PUBLIC)) can be recomputed.
/// </summary>
public sealed class TpmEccPublicKey
{
    /// <summary>Largest TPMT_PUBLIC accepted (ECC areas are ~90 bytes; RSA ones never get here).</summary>
    public const int MaxPublicAreaSize = TpmPublicArea.MaxSize;

    private readonly byte[] _publicArea;

    private TpmEccPublicKey(byte[] publicArea, TpmPublicHeader header, ushort scheme, ushort schemeHash, byte[] x, byte[] y)
    {
        _publicArea = publicArea;
        NameAlg = header.NameAlg;
        Attributes = header.Attributes;
        AuthPolicy = header.AuthPolicy;
        Symmetric = header.Symmetric;
        SymmetricKeyBits = header.SymmetricBits;
        SymmetricMode = header.SymmetricMode;
        Scheme = scheme;
        SchemeHash = schemeHash;
        X = x;
        Y = y;
    }

    public ushort NameAlg { get; }

    public TpmObjectAttributes Attributes { get; }

    /// <summary>The key's authPolicy (the standard EK policy for an ECC endorsement key).</summary>
    public byte[] AuthPolicy { get; }

    /// <summary>Symmetric algorithm of a storage key (TPM_ALG_AES for an EK) or TPM_ALG_NULL for a signing key.</summary>
    public ushort Symmetric { get; }

    public ushort SymmetricKeyBits { get; }

    public ushort SymmetricMode { get; }

    /// <summary>The key's signing scheme (TPM_ALG_ECDSA for attestation keys) or TPM_ALG_NULL.</summary>
    public ushort Scheme { get; }

    public ushort SchemeHash { get; }

    public byte[] X { get; }

    public byte[] Y { get; }

    /// <summary>The TPMT_PUBLIC bytes this key was parsed from.</summary>
    public ReadOnlySpan<byte> PublicArea => _publicArea;

    /// <summary>
    /// True for keys that can only sign TPM-generated structures (restricted + sign, fixedTPM, generated inside
    /// the TPM): only such a key makes a TPMS_ATTEST trustworthy, as the TPM refuses to sign outside data that
    /// begins with TPM_GENERATED_VALUE with it.
    /// </summary>
    public bool IsRestrictedSigningKey
    {
        get
        {
            const TpmObjectAttributes need = TpmObjectAttributes.Restricted | TpmObjectAttributes.Sign
                | TpmObjectAttributes.FixedTpm | TpmObjectAttributes.SensitiveDataOrigin;
            return (Attributes & need) == need && (Attributes & TpmObjectAttributes.Decrypt) == 0;
        }
    }

    /// <summary>Parses a TPM2B_PUBLIC (u16 size, TPMT_PUBLIC), e.g. what <c>tpm2_createprimary -o</c> writes.</summary>
    public static TpmEccPublicKey ParseSized(ReadOnlySpan<byte> tpm2bPublic)
    {
        var r = new TpmReader(tpm2bPublic);
        var inner = r.ReadSized(MaxPublicAreaSize, "TPM2B_PUBLIC");
        r.ExpectEnd("TPM2B_PUBLIC");
        return Parse(inner);
    }

    /// <summary>Parses a TPMT_PUBLIC (not the TPM2B wrapper) for an ECC P-256 key.</summary>
    public static TpmEccPublicKey Parse(ReadOnlySpan<byte> publicArea)
    {
        var header = TpmPublicArea.ReadHeader(publicArea, TpmAlg.Ecc, "TPM_ALG_ECC", out var r);
        var scheme = r.ReadUInt16();
        ushort schemeHash = 0;
        if (scheme != TpmAlg.Null)
        {
            schemeHash = r.ReadUInt16();
            if (scheme == TpmAlg.Ecdaa)
            {
                r.ReadUInt16(); // count
            }
        }
        var curve = r.ReadUInt16();
        if (curve != TpmConst.EccNistP256)
        {
            throw new TpmFormatException($"curve 0x{curve:X4} is not NIST P-256");
        }
        var kdf = r.ReadUInt16();
        if (kdf != TpmAlg.Null)
        {
            r.ReadUInt16();
        }
        var x = r.ReadSized(32, "ECC point x").ToArray();
        var y = r.ReadSized(32, "ECC point y").ToArray();
        r.ExpectEnd("TPMT_PUBLIC");
        if (x.Length == 0 || y.Length == 0)
        {
            throw new TpmFormatException("ECC public area has no point (a template, not a key)");
        }
        var key = new TpmEccPublicKey(publicArea.ToArray(), header, scheme, schemeHash, LeftPad(x), LeftPad(y));
        using (key.CreateECDsa())
        {
            // Throws TpmFormatException when the point is not on the curve.
        }
        return key;
    }

    /// <summary>A new ECDsa holding this public key; the caller disposes it.</summary>
    public ECDsa CreateECDsa()
    {
        try
        {
            return ECDsa.Create(new ECParameters
            {
                Curve = ECCurve.NamedCurves.nistP256,
                Q = new ECPoint { X = X, Y = Y },
            });
        }
        catch (CryptographicException e)
        {
            throw new TpmFormatException("ECC point is not a valid P-256 public key", e);
        }
    }

    /// <summary>DER SubjectPublicKeyInfo of the key.</summary>
    public byte[] ExportSubjectPublicKeyInfo()
    {
        using var ecdsa = CreateECDsa();
        return ecdsa.ExportSubjectPublicKeyInfo();
    }

    /// <summary>PEM "PUBLIC KEY" of the key (what tpm2_checkquote -u accepts).</summary>
    public string ExportPem()
    {
        using var ecdsa = CreateECDsa();
        return ecdsa.ExportSubjectPublicKeyInfoPem();
    }

    /// <summary>The TPM object name: nameAlg (u16) ‖ SHA-256(TPMT_PUBLIC).</summary>
    public byte[] ComputeName() => TpmPublicArea.Name(NameAlg, _publicArea);

    public override string ToString() => $"ECC P-256 key {Convert.ToHexString(ComputeName())}";

    private static byte[] LeftPad(byte[] v)
    {
        if (v.Length == 32)
        {
            return v;
        }
        var p = new byte[32];
        v.CopyTo(p, 32 - v.Length);
        return p;
    }
}
