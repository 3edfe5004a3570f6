using System.Security.Cryptography;
using Asterism.Crypto;

namespace Asterism.JoinService;

/// <summary>
/// Seals the next generation's master secret for the etcd rotation record (<c>Asterism.ControlPlane.KeyRotation</c>):
/// AES-256-GCM under HKDF(current master secret, "key-rotationSeal"), a random 96-bit nonce, the current
/// generation number as associated data. Only a holder of the current master secret — a control plane — opens it;
/// etcd's files, its admin and a backup of them do not.
/// </summary>
public static class RotationSeal
{
    private const string KeyId = "rotationSeal";
    private const int NonceBytes = 12;
    private const int TagBytes = 16;
    private const int MaxSealedBytes = 4096;

    /// <summary>nonce ‖ ciphertext ‖ tag of <paramref name="next"/>'s JSON.</summary>
    public static byte[] Seal(MasterSecret current, MasterSecret next, int currentGeneration)
    {
        ArgumentNullException.ThrowIfNull(current);
        ArgumentNullException.ThrowIfNull(next);
        using var key = KeyDerivation.DeriveKey(current.Key, current.Salt, KeyId);
        var plain = next.ToJson();
        try
        {
            var sealedBytes = new byte[NonceBytes + plain.Length + TagBytes];
            var nonce = sealedBytes.AsSpan(0, NonceBytes);
            RandomNumberGenerator.Fill(nonce);
            using var gcm = new AesGcm(key.Span, TagBytes);
            gcm.Encrypt(nonce, plain, sealedBytes.AsSpan(NonceBytes, plain.Length), sealedBytes.AsSpan(NonceBytes + plain.Length), Aad(currentGeneration));
            return sealedBytes;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(plain);
        }
    }

    /// <summary>The next master secret, or null when <paramref name="sealedBytes"/> was not sealed under <paramref name="current"/> for this generation.</summary>
    public static MasterSecret? Open(MasterSecret current, ReadOnlySpan<byte> sealedBytes, int currentGeneration)
    {
        ArgumentNullException.ThrowIfNull(current);
        if (sealedBytes.Length is <= NonceBytes + TagBytes or > MaxSealedBytes)
        {
            return null;
        }
        using var key = KeyDerivation.DeriveKey(current.Key, current.Salt, KeyId);
        var plain = new byte[sealedBytes.Length - NonceBytes - TagBytes];
        try
        {
            using var gcm = new AesGcm(key.Span, TagBytes);
            gcm.Decrypt(sealedBytes[..NonceBytes], sealedBytes.Slice(NonceBytes, plain.Length), sealedBytes[^TagBytes..], plain, Aad(currentGeneration));
            return MasterSecret.Parse(plain);
        }
        catch (Exception e) when (e is AuthenticationTagMismatchException or MasterSecretException)
        {
            return null;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(plain);
        }
    }

    private static byte[] Aad(int generation) => System.Text.Encoding.ASCII.GetBytes($"asterism rotation from generation {generation}");
}
