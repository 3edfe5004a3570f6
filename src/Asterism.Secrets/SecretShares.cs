using System.Security.Cryptography;
using System.Text;
using Asterism.Crypto;

namespace Asterism.Secrets;

/// <summary>
/// Splits a secret of any length into verifiable k-of-n shares and combines them again. The shared value is not the
/// secret itself but a fresh random scalar r; the secret is sealed with ChaCha20-Poly1305 under HKDF(r) and the sealed
/// bytes travel in every share (the README explains why: committing to secret chunks directly would let anyone
/// holding the commitments search small chunks). Combining names every bad share; it never combines one silently.
/// </summary>
public static class SecretShares
{
    private static readonly byte[] SealInfo = Encoding.ASCII.GetBytes("asterism secret share seal v1");

    /// <summary>
    /// Splits <paramref name="secret"/> for the cluster <paramref name="clusterId"/> (64 lowercase hex digits) into
    /// <paramref name="count"/> shares, any <paramref name="threshold"/> of which rebuild it. K must be at least 2 (one
    /// share would be the whole secret) and at most N.
    /// </summary>
    public static IReadOnlyList<SecretShare> Split(ReadOnlySpan<byte> secret, string clusterId, int threshold, int count) =>
        Split(secret, clusterId, threshold, count, generation: 1);

    /// <summary>
    /// <inheritdoc cref="Split(ReadOnlySpan{byte}, string, int, int)"/> The shares carry <paramref name="generation"/>,
    /// the master secret's generation (rotation), bound into every share's public parameters.
    /// </summary>
    public static IReadOnlyList<SecretShare> Split(ReadOnlySpan<byte> secret, string clusterId, int threshold, int count, int generation)
    {
        if (generation is < 1 or > KeyDerivation.MaxGeneration)
        {
            throw new ArgumentOutOfRangeException(nameof(generation), generation, "the generation must be 1 or more");
        }
        ValidateCounts(threshold, count);
        if (secret.IsEmpty || secret.Length > SecretShare.MaxSecretLength)
        {
            throw new ShareException($"the secret must be 1..{SecretShare.MaxSecretLength} bytes");
        }
        if (clusterId.Length != 64 || !clusterId.All(char.IsAsciiHexDigitLower))
        {
            throw new ArgumentException("the cluster ID must be 64 lowercase hex digits", nameof(clusterId));
        }
        var (scalar, commitments, values) = Feldman.Deal(threshold, count);
        try
        {
            var nonce = RandomNumberGenerator.GetBytes(12);
            var template = new SecretShare(SecretShare.CurrentVersion, clusterId, generation, 1, threshold, count, commitments, nonce, [], new byte[Feldman.ScalarSize]);
            var aad = template.PublicParameters();
            var sealedSecret = new byte[secret.Length + 16];
            var key = SealKey(scalar, aad);
            try
            {
                using var aead = new ChaCha20Poly1305(key);
                aead.Encrypt(nonce, secret, sealedSecret.AsSpan(0, secret.Length), sealedSecret.AsSpan(secret.Length), aad);
            }
            finally
            {
                CryptographicOperations.ZeroMemory(key);
            }
            return [.. values.Select((value, i) => new SecretShare(SecretShare.CurrentVersion, clusterId, generation, i + 1, threshold, count, commitments, nonce, sealedSecret, value))];
        }
        finally
        {
            CryptographicOperations.ZeroMemory(scalar);
        }
    }

    /// <summary>Refuses K &lt; 2, K &gt; N and N over the limit with one line each.</summary>
    public static void ValidateCounts(int threshold, int count)
    {
        if (count < 2 || count > SecretShare.MaxShares)
        {
            throw new ShareException($"--shares must be 2..{SecretShare.MaxShares}, not {count}");
        }
        if (threshold < 2)
        {
            throw new ShareException($"--threshold must be at least 2 (with {threshold} a single share would be the whole secret)");
        }
        if (threshold > count)
        {
            throw new ShareException($"--threshold {threshold} is greater than --shares {count}: the secret could never be rebuilt");
        }
    }

    /// <summary>
    /// Checks every share and rebuilds the secret (the caller zeroes it). Refused, naming the share: another cluster
    /// than <paramref name="expectedClusterId"/>, an index given twice, a share of another split (its commitments or
    /// sealed secret differ from the majority's), a share off the committed polynomial; then fewer than K shares.
    /// </summary>
    public static byte[] Combine(IReadOnlyList<SecretShare> shares, string? expectedClusterId)
    {
        CheckEach(shares, expectedClusterId);
        var first = shares[0];
        if (shares.Count < first.Threshold)
        {
            throw new ShareException($"need {first.Threshold} shares, have {shares.Count}");
        }
        var points = shares.Take(first.Threshold).Select(s => (s.Index, s.Value.ToArray())).ToList();
        var scalar = Feldman.Interpolate(points);
        var aad = first.PublicParameters();
        var key = SealKey(scalar, aad);
        var secret = new byte[first.SealedSecret.Length - 16];
        try
        {
            using var aead = new ChaCha20Poly1305(key);
            aead.Decrypt(first.Nonce, first.SealedSecret.AsSpan(0, secret.Length), first.SealedSecret.AsSpan(secret.Length), secret, aad);
            return secret;
        }
        catch (AuthenticationTagMismatchException)
        {
            CryptographicOperations.ZeroMemory(secret);
            throw new ShareException("the shares agree with their commitments but do not open the sealed secret: the split was made by a faulty or hostile tool");
        }
        finally
        {
            CryptographicOperations.ZeroMemory(scalar);
            CryptographicOperations.ZeroMemory(key);
            foreach (var (_, value) in points)
            {
                CryptographicOperations.ZeroMemory(value);
            }
        }
    }

    /// <summary>
    /// Every check <see cref="Combine"/> makes before counting: cluster, duplicate index, same split, on the committed
    /// polynomial. For shares that arrive one by one, so a bad one is named as soon as it is given.
    /// </summary>
    public static void CheckEach(IReadOnlyList<SecretShare> shares, string? expectedClusterId)
    {
        if (shares.Count == 0)
        {
            throw new ShareException("no shares given");
        }
        if (expectedClusterId is not null && shares.FirstOrDefault(s => s.ClusterId != expectedClusterId) is { } foreign)
        {
            throw new ShareException($"{foreign.Describe()} belongs to cluster {foreign.ClusterId[..16]}…, not to this cluster {expectedClusterId[..Math.Min(16, expectedClusterId.Length)]}…");
        }
        foreach (var group in shares.GroupBy(s => s.Index).Where(g => g.Count() > 1))
        {
            throw new ShareException($"share {group.Key} was given twice ({string.Join(" and ", group.Select(s => s.Source ?? "?"))}); give each share once");
        }
        var splits = shares.GroupBy(s => s.SplitFingerprint).OrderByDescending(g => g.Count()).ToList();
        if (splits.Count > 1)
        {
            var reference = splits[0].First();
            if (splits[0].Count() == splits[1].Count())
            {
                throw new ShareException($"{splits[1].First().Describe()} and {reference.Describe()} come from different splits (their commitments differ); which one is wrong cannot be told from these shares alone");
            }
            var odd = splits.Skip(1).SelectMany(g => g).First();
            throw new ShareException($"{odd.Describe()} is not from the same split as {reference.Describe()} (its commitments or sealed secret differ)");
        }
        foreach (var share in shares)
        {
            if (!Feldman.Verify(share.Commitments, share.Index, share.Value))
            {
                throw new ShareException($"{share.Describe()} does not match the commitments");
            }
        }
    }

    private static byte[] SealKey(byte[] scalar, byte[] aad)
    {
        var key = new byte[32];
        HKDF.DeriveKey(HashAlgorithmName.SHA256, scalar, key, SHA256.HashData(aad), SealInfo);
        return key;
    }
}
