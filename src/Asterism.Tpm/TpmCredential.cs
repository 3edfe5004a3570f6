using System.Buffers.Binary;
using System.Numerics;
using System.Security.Cryptography;

namespace Asterism.Tpm;

/// <summary>A credential for TPM2_ActivateCredential: the TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET contents.</summary>
public sealed record TpmMadeCredential(byte[] CredentialBlob, byte[] EncryptedSecret);

/// <summary>
/// TPM2_MakeCredential in software (TPM 2.0 Part 1 §24, Part 3 §12.6), for an RSA endorsement key: a registrar
/// wraps a secret so that only the TPM holding the EK's private key, with an object of the given name loaded, can
/// recover it. A random seed is encrypted to the EK with RSA-OAEP (SHA-256, label "IDENTITY\0"); from the seed,
/// KDFa derives an AES-128 key ("STORAGE", context = the object's name) that encrypts the secret in CFB mode with a
/// zero IV, and an HMAC key ("INTEGRITY") whose HMAC over (ciphertext ‖ name) the TPM checks before it decrypts.
/// </summary>
public static class TpmCredential
{
    /// <summary>PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256: the authPolicy of the standard (TCG EK profile) EKs.</summary>
    public static readonly byte[] EndorsementPolicy = Convert.FromHexString("837197674484B3F81A90CC8D46A5D724FD52D76E06520B64F2A1DA1B331469AA");

    /// <summary>The attributes of a standard EK: a restricted decryption storage key only policy can use.</summary>
    public const TpmObjectAttributes EkAttributes = TpmObjectAttributes.FixedTpm | TpmObjectAttributes.FixedParent
        | TpmObjectAttributes.SensitiveDataOrigin | TpmObjectAttributes.AdminWithPolicy | TpmObjectAttributes.Restricted
        | TpmObjectAttributes.Decrypt;

    private const ushort CfbMode = 0x0043;
    private const int DigestSize = 32;

    /// <summary>
    /// The TCG EK Credential Profile's RSA-2048 template (low range, L-1): what a TPM vendor and swtpm_setup create
    /// at 0x81010001. Re-created with TPM2_CreatePrimary it yields the same key as the certified one.
    /// </summary>
    public static byte[] RsaEkTemplate()
    {
        var w = new TpmWriter(360)
            .WriteUInt16(TpmAlg.Rsa).WriteUInt16(TpmAlg.Sha256).WriteUInt32((uint)EkAttributes)
            .WriteSized(EndorsementPolicy)
            .WriteUInt16(TpmAlg.Aes).WriteUInt16(128).WriteUInt16(CfbMode)
            .WriteUInt16(TpmAlg.Null) // scheme
            .WriteUInt16(2048).WriteUInt32(0)
            .WriteSized(new byte[256]);
        return w.ToArray();
    }

    /// <summary>
    /// True when <paramref name="ek"/> is a key MakeCredential can target and PolicySecret(endorsement) unlocks:
    /// a restricted decryption key, fixed to its TPM, generated inside it, AES-128-CFB, with the standard EK policy.
    /// </summary>
    public static bool IsStandardEndorsementKey(TpmRsaPublicKey ek)
    {
        ArgumentNullException.ThrowIfNull(ek);
        const TpmObjectAttributes need = TpmObjectAttributes.FixedTpm | TpmObjectAttributes.FixedParent
            | TpmObjectAttributes.SensitiveDataOrigin | TpmObjectAttributes.Restricted | TpmObjectAttributes.Decrypt
            | TpmObjectAttributes.AdminWithPolicy;
        return (ek.Attributes & need) == need && (ek.Attributes & (TpmObjectAttributes.Sign | TpmObjectAttributes.UserWithAuth)) == 0
            && ek.Symmetric == TpmAlg.Aes && ek.SymmetricKeyBits == 128 && ek.SymmetricMode == CfbMode
            && CryptographicOperations.FixedTimeEquals(ek.AuthPolicy, EndorsementPolicy);
    }

    /// <summary>Wraps <paramref name="secret"/> (1-32 bytes) for the TPM holding <paramref name="ek"/> and an object named <paramref name="objectName"/>.</summary>
    public static TpmMadeCredential Make(TpmRsaPublicKey ek, ReadOnlySpan<byte> objectName, ReadOnlySpan<byte> secret)
    {
        ArgumentNullException.ThrowIfNull(ek);
        if (!IsStandardEndorsementKey(ek))
        {
            throw new ArgumentException("the key is not a standard RSA endorsement key (restricted decryption, AES-128-CFB, endorsement policy)", nameof(ek));
        }
        if (secret.IsEmpty || secret.Length > DigestSize)
        {
            throw new ArgumentException($"a credential secret is 1-{DigestSize} bytes", nameof(secret));
        }
        if (objectName.Length != 2 + DigestSize || BinaryPrimitives.ReadUInt16BigEndian(objectName) != TpmAlg.Sha256)
        {
            throw new ArgumentException("the object name must be a SHA-256 TPM name", nameof(objectName));
        }
        var seed = RandomNumberGenerator.GetBytes(DigestSize);
        var credential = new byte[2 + secret.Length];
        byte[]? symKey = null, hmacKey = null;
        try
        {
            var encryptedSeed = RsaOaepEncrypt(ek.ToParameters(), "IDENTITY\0"u8, seed);
            symKey = KdfA(seed, "STORAGE", objectName, [], 128);
            BinaryPrimitives.WriteUInt16BigEndian(credential, (ushort)secret.Length);
            secret.CopyTo(credential.AsSpan(2));
            var encIdentity = AesCfbEncrypt(symKey, credential);
            hmacKey = KdfA(seed, "INTEGRITY", [], [], DigestSize * 8);
            using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, hmacKey);
            hmac.AppendData(encIdentity);
            hmac.AppendData(objectName);
            var outerHmac = hmac.GetHashAndReset();
            var blob = new TpmWriter(2 + outerHmac.Length + encIdentity.Length).WriteSized(outerHmac).WriteBytes(encIdentity).ToArray();
            return new TpmMadeCredential(blob, encryptedSeed);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(seed);
            CryptographicOperations.ZeroMemory(credential);
            CryptographicOperations.ZeroMemory(symKey);
            CryptographicOperations.ZeroMemory(hmacKey);
        }
    }

    /// <summary>KDFa (Part 1 §11.4.10.2) with HMAC-SHA-256: the label is NUL-terminated, the bit count ends each block.</summary>
    internal static byte[] KdfA(ReadOnlySpan<byte> key, string label, ReadOnlySpan<byte> contextU, ReadOnlySpan<byte> contextV, int bits)
    {
        var result = new byte[(bits + 7) / 8];
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key);
        Span<byte> word = stackalloc byte[4];
        var labelBytes = System.Text.Encoding.ASCII.GetBytes(label + "\0");
        for (uint counter = 1, filled = 0; filled < result.Length; counter++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(word, counter);
            hmac.AppendData(word);
            hmac.AppendData(labelBytes);
            hmac.AppendData(contextU);
            hmac.AppendData(contextV);
            BinaryPrimitives.WriteUInt32BigEndian(word, (uint)bits);
            hmac.AppendData(word);
            var block = hmac.GetHashAndReset();
            var take = Math.Min(block.Length, result.Length - (int)filled);
            block.AsSpan(0, take).CopyTo(result.AsSpan((int)filled));
            CryptographicOperations.ZeroMemory(block);
            filled += (uint)take;
        }
        return result;
    }

    /// <summary>AES-CFB-128 with a zero IV over any length, as the TPM uses for credentials (the last block may be short).</summary>
    internal static byte[] AesCfbEncrypt(byte[] key, ReadOnlySpan<byte> plaintext)
    {
        using var aes = Aes.Create();
        aes.Key = key;
        var output = new byte[plaintext.Length];
        Span<byte> feedback = stackalloc byte[16];
        feedback.Clear();
        Span<byte> stream = stackalloc byte[16];
        for (var offset = 0; offset < plaintext.Length; offset += 16)
        {
            aes.EncryptEcb(feedback, stream, PaddingMode.None);
            var n = Math.Min(16, plaintext.Length - offset);
            for (var i = 0; i < n; i++)
            {
                output[offset + i] = (byte)(plaintext[offset + i] ^ stream[i]);
            }
            if (n == 16)
            {
                output.AsSpan(offset, 16).CopyTo(feedback);
            }
        }
        stream.Clear();
        return output;
    }

    /// <summary>
    /// RSAES-OAEP encryption (RFC 8017 §7.1.1) with SHA-256 and MGF1-SHA-256 and an explicit label, which .NET's RSA
    /// API cannot take. Only public-key arithmetic: the exponentiation is over the padded, randomised message.
    /// </summary>
    internal static byte[] RsaOaepEncrypt(RSAParameters publicKey, ReadOnlySpan<byte> label, ReadOnlySpan<byte> message)
    {
        var modulus = publicKey.Modulus ?? throw new ArgumentException("no modulus", nameof(publicKey));
        var k = modulus.Length;
        const int h = DigestSize;
        if (message.Length > k - (2 * h) - 2)
        {
            throw new ArgumentException("message too long for RSA-OAEP", nameof(message));
        }
        var em = new byte[k];
        var seed = em.AsSpan(1, h);
        var db = em.AsSpan(1 + h);
        SHA256.HashData(label, db);
        db[db.Length - message.Length - 1] = 0x01;
        message.CopyTo(db[^message.Length..]);
        RandomNumberGenerator.Fill(seed);
        XorMgf1(seed, db);
        XorMgf1(db, seed);
        var m = new BigInteger(em, isUnsigned: true, isBigEndian: true);
        var n = new BigInteger(modulus, isUnsigned: true, isBigEndian: true);
        var e = new BigInteger(publicKey.Exponent, isUnsigned: true, isBigEndian: true);
        var c = BigInteger.ModPow(m, e, n).ToByteArray(isUnsigned: true, isBigEndian: true);
        CryptographicOperations.ZeroMemory(em);
        var result = new byte[k];
        c.CopyTo(result.AsSpan(k - c.Length));
        return result;
    }

    private static void XorMgf1(ReadOnlySpan<byte> seed, Span<byte> target)
    {
        Span<byte> block = stackalloc byte[DigestSize];
        Span<byte> counter = stackalloc byte[4];
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (uint i = 0, done = 0; done < target.Length; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(counter, i);
            hash.AppendData(seed);
            hash.AppendData(counter);
            hash.GetHashAndReset(block);
            var n = Math.Min(DigestSize, target.Length - (int)done);
            for (var j = 0; j < n; j++)
            {
                target[(int)done + j] ^= block[j];
            }
            done += (uint)n;
        }
        block.Clear();
    }
}
