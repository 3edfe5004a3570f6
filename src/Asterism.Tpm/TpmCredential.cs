using System.Buffers.Binary;
using System.Numerics;
using System.Security.Cryptography;

namespace Asterism.Tpm;

/// <summary>A credential for TPM2_ActivateCredential: the TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET contents.</summary>
public sealed record TpmMadeCredential(byte[] CredentialBlob, byte[] EncryptedSecret);

/// <summary>
/// TPM2_MakeCredential in software (TPM 2.0 Part 1 §24, Part 3 §12.6), for an RSA or ECC P-256 endorsement key: a
/// registrar wraps a secret so that only the TPM holding the EK's private key, with an object of the given name
/// loaded, can recover it. The seed reaches the TPM either encrypted to an RSA EK with RSA-OAEP (SHA-256, label
/// "IDENTITY\0"), or, for an ECC EK, as one side of an ECDH exchange: an ephemeral P-256 key whose shared x-coordinate
/// with the EK goes through KDFe (Part 1 §11.4.10.3, label "IDENTITY", the two x-coordinates as party info) to give
/// the seed, and whose public point is the encrypted secret. From the seed, KDFa derives an AES-128 key ("STORAGE", context = the object's name) that encrypts the secret in CFB mode with a
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
    /// The TCG EK Credential Profile's ECC NIST P-256 template (low range, L-2): SHA-256 name, the EK attributes and
    /// policy, AES-128-CFB, no scheme or KDF, and a unique field of two 32-byte zero coordinates. Its certificate lives
    /// at NV 0x01C0000A, the key (when persisted) at 0x81010002.
    /// </summary>
    public static byte[] EccEkTemplate()
    {
        var w = new TpmWriter(128)
            .WriteUInt16(TpmAlg.Ecc).WriteUInt16(TpmAlg.Sha256).WriteUInt32((uint)EkAttributes)
            .WriteSized(EndorsementPolicy)
            .WriteUInt16(TpmAlg.Aes).WriteUInt16(128).WriteUInt16(CfbMode)
            .WriteUInt16(TpmAlg.Null) // scheme
            .WriteUInt16(TpmConst.EccNistP256)
            .WriteUInt16(TpmAlg.Null) // kdf
            .WriteSized(new byte[32]).WriteSized(new byte[32]);
        return w.ToArray();
    }

    /// <summary>
    /// True when <paramref name="ek"/> is a key MakeCredential can target and PolicySecret(endorsement) unlocks:
    /// a restricted decryption key, fixed to its TPM, generated inside it, AES-128-CFB, with the standard EK policy.
    /// </summary>
    public static bool IsStandardEndorsementKey(TpmRsaPublicKey ek)
    {
        ArgumentNullException.ThrowIfNull(ek);
        return IsStandardEndorsement(ek.Attributes, ek.Symmetric, ek.SymmetricKeyBits, ek.SymmetricMode, ek.AuthPolicy);
    }

    /// <summary>
    /// The same for an ECC P-256 key (the parser already refused other curves and name algorithms); an EK has no
    /// signing scheme.
    /// </summary>
    public static bool IsStandardEndorsementKey(TpmEccPublicKey ek)
    {
        ArgumentNullException.ThrowIfNull(ek);
        return ek.Scheme == TpmAlg.Null && ek.NameAlg == TpmAlg.Sha256
            && IsStandardEndorsement(ek.Attributes, ek.Symmetric, ek.SymmetricKeyBits, ek.SymmetricMode, ek.AuthPolicy);
    }

    private static bool IsStandardEndorsement(TpmObjectAttributes attributes, ushort symmetric, ushort bits, ushort mode, byte[] policy)
    {
        const TpmObjectAttributes need = TpmObjectAttributes.FixedTpm | TpmObjectAttributes.FixedParent
            | TpmObjectAttributes.SensitiveDataOrigin | TpmObjectAttributes.Restricted | TpmObjectAttributes.Decrypt
            | TpmObjectAttributes.AdminWithPolicy;
        return (attributes & need) == need && (attributes & (TpmObjectAttributes.Sign | TpmObjectAttributes.UserWithAuth)) == 0
            && symmetric == TpmAlg.Aes && bits == 128 && mode == CfbMode
            && CryptographicOperations.FixedTimeEquals(policy, EndorsementPolicy);
    }

    /// <summary>Wraps <paramref name="secret"/> (1-32 bytes) for the TPM holding <paramref name="ek"/> and an object named <paramref name="objectName"/>.</summary>
    public static TpmMadeCredential Make(TpmRsaPublicKey ek, ReadOnlySpan<byte> objectName, ReadOnlySpan<byte> secret)
    {
        ArgumentNullException.ThrowIfNull(ek);
        if (!IsStandardEndorsementKey(ek))
        {
            throw new ArgumentException("the key is not a standard RSA endorsement key (restricted decryption, AES-128-CFB, endorsement policy)", nameof(ek));
        }
        CheckArguments(objectName, secret);
        var seed = RandomNumberGenerator.GetBytes(DigestSize);
        try
        {
            var encryptedSeed = RsaOaepEncrypt(ek.ToParameters(), "IDENTITY\0"u8, seed);
            return new TpmMadeCredential(Wrap(seed, objectName, secret), encryptedSeed);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(seed);
        }
    }

    /// <summary>
    /// Wraps <paramref name="secret"/> (1-32 bytes) for the TPM holding the ECC P-256 <paramref name="ek"/> and an
    /// object named <paramref name="objectName"/>: the seed comes from ECDH between a fresh ephemeral key and the EK
    /// (TPM 2.0 Part 1 §24.3 via KDFe), and the encrypted secret is the ephemeral public point (TPMS_ECC_POINT).
    /// </summary>
    public static TpmMadeCredential Make(TpmEccPublicKey ek, ReadOnlySpan<byte> objectName, ReadOnlySpan<byte> secret)
    {
        ArgumentNullException.ThrowIfNull(ek);
        if (!IsStandardEndorsementKey(ek))
        {
            throw new ArgumentException("the key is not a standard ECC endorsement key (restricted decryption, AES-128-CFB, endorsement policy)", nameof(ek));
        }
        CheckArguments(objectName, secret);
        using var ephemeral = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        using var ekKey = ECDiffieHellman.Create(new ECParameters
        {
            Curve = ECCurve.NamedCurves.nistP256,
            Q = new ECPoint { X = ek.X, Y = ek.Y },
        });
        var point = ephemeral.ExportParameters(false).Q;
        byte[]? z = null, seed = null;
        try
        {
            // The raw agreement is the shared point's x-coordinate, fixed to 32 bytes: the Z of Part 1 §C.6.1.
            z = ephemeral.DeriveRawSecretAgreement(ekKey.PublicKey);
            seed = KdfE(z, "IDENTITY", point.X, ek.X, DigestSize * 8);
            var encryptedSecret = new TpmWriter(4 + point.X!.Length + point.Y!.Length).WriteSized(point.X).WriteSized(point.Y).ToArray();
            return new TpmMadeCredential(Wrap(seed, objectName, secret), encryptedSecret);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(z);
            CryptographicOperations.ZeroMemory(seed);
        }
    }

    private static void CheckArguments(ReadOnlySpan<byte> objectName, ReadOnlySpan<byte> secret)
    {
        if (secret.IsEmpty || secret.Length > DigestSize)
        {
            throw new ArgumentException($"a credential secret is 1-{DigestSize} bytes", nameof(secret));
        }
        if (objectName.Length != 2 + DigestSize || BinaryPrimitives.ReadUInt16BigEndian(objectName) != TpmAlg.Sha256)
        {
            throw new ArgumentException("the object name must be a SHA-256 TPM name", nameof(objectName));
        }
    }

    /// <summary>The part shared by both EK types: the TPM2B_ID_OBJECT (outer HMAC, then the AES-CFB encrypted TPM2B secret).</summary>
    private static byte[] Wrap(ReadOnlySpan<byte> seed, ReadOnlySpan<byte> objectName, ReadOnlySpan<byte> secret)
    {
        var credential = new byte[2 + secret.Length];
        byte[]? symKey = null, hmacKey = null;
        try
        {
            symKey = KdfA(seed, "STORAGE", objectName, [], 128);
            BinaryPrimitives.WriteUInt16BigEndian(credential, (ushort)secret.Length);
            secret.CopyTo(credential.AsSpan(2));
            var encIdentity = AesCfbEncrypt(symKey, credential);
            hmacKey = KdfA(seed, "INTEGRITY", [], [], DigestSize * 8);
            using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, hmacKey);
            hmac.AppendData(encIdentity);
            hmac.AppendData(objectName);
            var outerHmac = hmac.GetHashAndReset();
            return new TpmWriter(2 + outerHmac.Length + encIdentity.Length).WriteSized(outerHmac).WriteBytes(encIdentity).ToArray();
        }
        finally
        {
            CryptographicOperations.ZeroMemory(credential);
            CryptographicOperations.ZeroMemory(symKey);
            CryptographicOperations.ZeroMemory(hmacKey);
        }
    }

    /// <summary>
    /// KDFe (Part 1 §11.4.10.3) with SHA-256: block i = SHA-256(counter_i ‖ Z ‖ label‖NUL ‖ partyU ‖ partyV), counter
    /// from 1, concatenated and cut to <paramref name="bits"/>.
    /// </summary>
    internal static byte[] KdfE(ReadOnlySpan<byte> z, string label, ReadOnlySpan<byte> partyU, ReadOnlySpan<byte> partyV, int bits)
    {
        var result = new byte[(bits + 7) / 8];
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> word = stackalloc byte[4];
        Span<byte> block = stackalloc byte[DigestSize];
        var labelBytes = System.Text.Encoding.ASCII.GetBytes(label + "\0");
        for (uint counter = 1, filled = 0; filled < result.Length; counter++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(word, counter);
            hash.AppendData(word);
            hash.AppendData(z);
            hash.AppendData(labelBytes);
            hash.AppendData(partyU);
            hash.AppendData(partyV);
            hash.GetHashAndReset(block);
            var take = Math.Min(DigestSize, result.Length - (int)filled);
            block[..take].CopyTo(result.AsSpan((int)filled));
            filled += (uint)take;
        }
        block.Clear();
        return result;
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
