using System.Security.Cryptography;

namespace Asterism.Tpm.Tests;

/// <summary>
/// Builds TPM structures with a software P-256 key, to test the verifier without a TPM (including keys and
/// quotes a TPM would never produce).
/// </summary>
public sealed class TestQuotes : IDisposable
{
    public TestQuotes(TpmObjectAttributes attributes = TpmAttestationKey.KeyAttributes)
    {
        Key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var p = Key.ExportParameters(false);
        PublicArea = new TpmWriter()
            .WriteUInt16(TpmAlg.Ecc).WriteUInt16(TpmAlg.Sha256).WriteUInt32((uint)attributes).WriteUInt16(0)
            .WriteUInt16(TpmAlg.Null).WriteUInt16(TpmAlg.Ecdsa).WriteUInt16(TpmAlg.Sha256).WriteUInt16(3).WriteUInt16(TpmAlg.Null)
            .WriteSized(p.Q.X).WriteSized(p.Q.Y).ToArray();
    }

    public ECDsa Key { get; }

    public byte[] PublicArea { get; }

    public TpmEccPublicKey PublicKey => TpmEccPublicKey.Parse(PublicArea);

    public static Dictionary<int, byte[]> Pcrs(params int[] indices) =>
        indices.ToDictionary(i => i, i => SHA256.HashData(BitConverter.GetBytes(i)));

    /// <summary>A TPMS_ATTEST quote over the SHA-256 bank with the given values.</summary>
    public static byte[] Attest(byte[] extraData, IReadOnlyDictionary<int, byte[]> pcrs, uint magic = 0xFF544347, ushort type = 0x8018)
    {
        var w = new TpmWriter()
            .WriteUInt32(magic).WriteUInt16(type)
            .WriteSized(new byte[34])
            .WriteSized(extraData)
            .WriteUInt64(12345).WriteUInt32(1).WriteUInt32(0).WriteByte(1)
            .WriteUInt64(0x2019_0101);
        var selection = TpmPcrSelection.Sha256(pcrs.Keys);
        selection.WriteList(w);
        w.WriteSized(TpmQuoteVerifier.ComputePcrDigest([selection], pcrs));
        return w.ToArray();
    }

    /// <summary>TPMT_SIGNATURE (ECDSA, SHA-256) over SHA-256(message).</summary>
    public byte[] Sign(byte[] message)
    {
        var sig = Key.SignHash(SHA256.HashData(message), DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        return new TpmWriter().WriteUInt16(TpmAlg.Ecdsa).WriteUInt16(TpmAlg.Sha256).WriteSized(sig.AsSpan(0, 32)).WriteSized(sig.AsSpan(32)).ToArray();
    }

    public void Dispose() => Key.Dispose();
}
