using System.Security.Cryptography;

namespace Asterism.Tpm;

/// <summary>
/// An RSA TPMT_PUBLIC parsed from untrusted bytes — what an RSA endorsement key looks like: attributes, policy,
/// the symmetric definition (used by MakeCredential), modulus and exponent. Keeps the bytes for the object name.
/// </summary>
public sealed class TpmRsaPublicKey
{
    /// <summary>Largest TPMT_PUBLIC accepted (an RSA-4096 area is ~600 bytes).</summary>
    public const int MaxPublicAreaSize = TpmPublicArea.MaxSize;

    private readonly byte[] _publicArea;

    private TpmRsaPublicKey(byte[] publicArea, ushort nameAlg, TpmObjectAttributes attributes, byte[] authPolicy,
        ushort symmetric, ushort symmetricBits, ushort symmetricMode, int keyBits, byte[] exponent, byte[] modulus)
    {
        _publicArea = publicArea;
        NameAlg = nameAlg;
        Attributes = attributes;
        AuthPolicy = authPolicy;
        Symmetric = symmetric;
        SymmetricKeyBits = symmetricBits;
        SymmetricMode = symmetricMode;
        KeyBits = keyBits;
        Exponent = exponent;
        Modulus = modulus;
    }

    public ushort NameAlg { get; }

    public TpmObjectAttributes Attributes { get; }

    public byte[] AuthPolicy { get; }

    /// <summary>Symmetric algorithm of a storage key (TPM_ALG_AES for an EK) or TPM_ALG_NULL.</summary>
    public ushort Symmetric { get; }

    public ushort SymmetricKeyBits { get; }

    public ushort SymmetricMode { get; }

    public int KeyBits { get; }

    /// <summary>Big-endian public exponent (65537 when the area says 0).</summary>
    public byte[] Exponent { get; }

    /// <summary>Big-endian modulus.</summary>
    public byte[] Modulus { get; }

    public ReadOnlySpan<byte> PublicArea => _publicArea;

    /// <summary>Parses a TPMT_PUBLIC (not the TPM2B wrapper) of an RSA key.</summary>
    public static TpmRsaPublicKey Parse(ReadOnlySpan<byte> publicArea)
    {
        var header = TpmPublicArea.ReadHeader(publicArea, TpmAlg.Rsa, "TPM_ALG_RSA", out var r);
        var scheme = r.ReadUInt16();
        if (scheme != TpmAlg.Null)
        {
            r.ReadUInt16(); // scheme hash
        }
        var keyBits = r.ReadUInt16();
        if (keyBits is not (2048 or 3072 or 4096))
        {
            throw new TpmFormatException($"RSA key size {keyBits} is not supported");
        }
        var exponent = r.ReadUInt32();
        var modulus = r.ReadSized(512, "RSA modulus").ToArray();
        r.ExpectEnd("TPMT_PUBLIC");
        if (modulus.Length != keyBits / 8 || (modulus[0] & 0x80) == 0)
        {
            throw new TpmFormatException("RSA modulus does not match the key size (a template, not a key)");
        }
        var e = exponent == 0 ? 65537u : exponent;
        byte[] exponentBytes = [.. BitConverter.GetBytes(e).Reverse().SkipWhile(b => b == 0)];
        return new TpmRsaPublicKey(publicArea.ToArray(), header.NameAlg, header.Attributes, header.AuthPolicy, header.Symmetric,
            header.SymmetricBits, header.SymmetricMode, keyBits, exponentBytes, modulus);
    }

    /// <summary>The TPM object name: nameAlg (u16) ‖ SHA-256(TPMT_PUBLIC).</summary>
    public byte[] ComputeName() => TpmPublicArea.Name(NameAlg, _publicArea);

    /// <summary>The public key for .NET.</summary>
    public RSAParameters ToParameters() => new() { Modulus = Modulus, Exponent = Exponent };

    public override string ToString() => $"RSA-{KeyBits} key {Convert.ToHexString(ComputeName())}";
}
