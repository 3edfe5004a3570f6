using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace Asterism.Attestation.Simulated;

/// <summary>
/// Imported P-256 public keys by SPKI fingerprint. Importing a key costs about as much as verifying a signature
/// (OpenSSL 3 decoders), and a validator sees the same few node keys again and again. Only public keys are held;
/// the cache is bounded and each entry verifies under its own lock (ECDsa instances are not documented thread-safe).
/// </summary>
internal sealed class VerificationKeyCache
{
    public const int Capacity = 256;

    private const string P256Oid = "1.2.840.10045.3.1.7";

    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    /// <summary>The key for <paramref name="spki"/>, or null when it is not a well-formed P-256 public key.</summary>
    public Entry? Get(byte[] spki, string fingerprint)
    {
        if (_entries.TryGetValue(fingerprint, out var cached) && cached.Spki.AsSpan().SequenceEqual(spki))
        {
            return cached;
        }
        var key = ECDsa.Create();
        try
        {
            key.ImportSubjectPublicKeyInfo(spki, out var read);
            if (read != spki.Length || key.ExportParameters(false).Curve.Oid?.Value != P256Oid)
            {
                key.Dispose();
                return null;
            }
        }
        catch (CryptographicException)
        {
            key.Dispose();
            return null;
        }
        var entry = new Entry(spki, key);
        if (_entries.Count < Capacity)
        {
            // A racing insert keeps the first entry; ours stays usable for this call and is left to the GC.
            _entries.TryAdd(fingerprint, entry);
        }
        return entry;
    }

    public sealed class Entry(byte[] spki, ECDsa key)
    {
        private readonly Lock _lock = new();

        public byte[] Spki { get; } = spki;

        public bool Verify(byte[] data, byte[] signature)
        {
            Span<byte> hash = stackalloc byte[32];
            SHA256.HashData(data, hash);
            lock (_lock)
            {
                return key.VerifyHash(hash, signature, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
            }
        }
    }
}
