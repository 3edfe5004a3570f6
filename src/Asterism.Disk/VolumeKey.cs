using System.Security.Cryptography;

namespace Asterism.Disk;

/// <summary>The 512-bit LUKS2 volume key, pinned and zeroed on dispose; never printed.</summary>
public sealed class VolumeKey : IDisposable
{
    private readonly byte[] _key = GC.AllocateArray<byte>(Luks2Metadata.KeyBytes, pinned: true);
    private bool _disposed;

    internal VolumeKey(ReadOnlySpan<byte> key)
    {
        if (key.Length != Luks2Metadata.KeyBytes)
        {
            throw new ArgumentException("A volume key is 64 bytes.", nameof(key));
        }
        key.CopyTo(_key);
    }

    /// <summary>A fresh random volume key.</summary>
    public static VolumeKey Generate()
    {
        Span<byte> k = stackalloc byte[Luks2Metadata.KeyBytes];
        RandomNumberGenerator.Fill(k);
        var key = new VolumeKey(k);
        CryptographicOperations.ZeroMemory(k);
        return key;
    }

    /// <summary>Wraps an externally obtained volume key (offline tools; the caller zeroes its copy).</summary>
    public static VolumeKey FromBytes(ReadOnlySpan<byte> key) => new(key);

    internal ReadOnlySpan<byte> Bytes
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _key;
        }
    }

    /// <summary>Constant-time comparison with another key (tests, tools).</summary>
    public bool Matches(ReadOnlySpan<byte> other) => CryptographicOperations.FixedTimeEquals(Bytes, other);

    /// <summary>A payload cipher for this key.</summary>
    public AesXts CreateCipher() => new(Bytes);

    /// <inheritdoc />
    public override string ToString() => "[redacted]";

    /// <inheritdoc />
    public void Dispose()
    {
        if (!_disposed)
        {
            CryptographicOperations.ZeroMemory(_key);
            _disposed = true;
        }
    }
}

/// <summary>Outcome of checking a passphrase against a header.</summary>
public enum KeyCheckResult
{
    /// <summary>The passphrase opens a keyslot.</summary>
    Accepted,

    /// <summary>No keyslot opens with this passphrase.</summary>
    Rejected,
}
