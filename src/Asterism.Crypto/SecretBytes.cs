using System.Security.Cryptography;

namespace Asterism.Crypto;

/// <summary>
/// Owns a buffer of key material: never printed (<see cref="ToString"/> says "[redacted]"), compared in constant
/// time, zeroed on <see cref="Dispose"/>.
/// </summary>
public sealed class SecretBytes : IDisposable, IEquatable<SecretBytes>
{
    private readonly byte[] _bytes;
    private bool _disposed;

    /// <summary>Takes ownership of <paramref name="bytes"/> (no copy).</summary>
    public SecretBytes(byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        _bytes = bytes;
    }

    public static SecretBytes CopyOf(ReadOnlySpan<byte> bytes) => new(bytes.ToArray());

    public static SecretBytes Random(int length) => new(RandomNumberGenerator.GetBytes(length));

    public int Length => _bytes.Length;

    /// <summary>The secret bytes; valid until <see cref="Dispose"/>.</summary>
    public ReadOnlySpan<byte> Span
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _bytes;
        }
    }

    /// <summary>A fresh copy the caller owns (and must zero).</summary>
    public byte[] ToArray() => Span.ToArray();

    public bool Equals(SecretBytes? other) =>
        other is not null && CryptographicOperations.FixedTimeEquals(Span, other.Span);

    public override bool Equals(object? obj) => obj is SecretBytes other && Equals(other);

    public override int GetHashCode() => Length;

    public override string ToString() => "[redacted]";

    public void Dispose()
    {
        if (!_disposed)
        {
            CryptographicOperations.ZeroMemory(_bytes);
            _disposed = true;
        }
    }
}
