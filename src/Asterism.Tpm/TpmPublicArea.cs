using System.Security.Cryptography;

namespace Asterism.Tpm;

/// <summary>The fields every TPMT_PUBLIC starts with, whatever the key type.</summary>
internal readonly record struct TpmPublicHeader(
    ushort NameAlg, TpmObjectAttributes Attributes, byte[] AuthPolicy, ushort Symmetric, ushort SymmetricBits, ushort SymmetricMode);

/// <summary>
/// What the RSA and ECC public-area parsers share: the size limit, the type and name-algorithm checks, the common
/// header (attributes, authPolicy, symmetric definition) and the object name. The type-specific parameters and the
/// unique field stay with each key type.
/// </summary>
internal static class TpmPublicArea
{
    /// <summary>Public areas are small; anything larger is refused before parsing.</summary>
    public const int MaxSize = 1024;

    /// <summary>
    /// Checks the size, reads type (must be <paramref name="type"/>), nameAlg (must be SHA-256), attributes, authPolicy
    /// and the symmetric definition; <paramref name="r"/> is left at the scheme.
    /// </summary>
    public static TpmPublicHeader ReadHeader(ReadOnlySpan<byte> publicArea, ushort type, string typeName, out TpmReader r)
    {
        if (publicArea.Length > MaxSize)
        {
            throw new TpmFormatException($"public area has {publicArea.Length} bytes, at most {MaxSize} allowed");
        }
        r = new TpmReader(publicArea);
        var actual = r.ReadUInt16();
        if (actual != type)
        {
            throw new TpmFormatException($"public area type 0x{actual:X4} is not {typeName}");
        }
        var nameAlg = r.ReadUInt16();
        if (nameAlg != TpmAlg.Sha256)
        {
            throw new TpmFormatException($"name algorithm 0x{nameAlg:X4} is not SHA-256");
        }
        var attributes = (TpmObjectAttributes)r.ReadUInt32();
        var policy = r.ReadSized(TpmConst.MaxDigest, "authPolicy").ToArray();
        var symmetric = r.ReadUInt16();
        ushort bits = 0, mode = 0;
        if (symmetric != TpmAlg.Null)
        {
            bits = r.ReadUInt16();
            mode = r.ReadUInt16();
        }
        return new TpmPublicHeader(nameAlg, attributes, policy, symmetric, bits, mode);
    }

    /// <summary>The TPM object name: nameAlg (u16) ‖ SHA-256(TPMT_PUBLIC).</summary>
    public static byte[] Name(ushort nameAlg, ReadOnlySpan<byte> publicArea)
    {
        var name = new byte[34];
        name[0] = (byte)(nameAlg >> 8);
        name[1] = (byte)nameAlg;
        SHA256.HashData(publicArea, name.AsSpan(2));
        return name;
    }
}
