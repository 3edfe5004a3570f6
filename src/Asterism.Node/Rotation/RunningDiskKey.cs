using System.Security.Cryptography;
using Asterism.Crypto;
using Asterism.Disk;

namespace Asterism.Node.Rotation;

/// <summary>
/// The key keyslot 0 of the running node's disk opens with, held from the unlock (first boot's derived key, or the key
/// race's winner) until the node stops, so a rotation can move the keyslot from it (<see cref="StateDisk.RotateKey"/>
/// needs the old key). Zeroed on dispose and when replaced; never logged.
/// </summary>
public sealed class RunningDiskKey(SecretBytes key) : IDisposable
{
    private readonly Lock _lock = new();
    private SecretBytes _key = key ?? throw new ArgumentNullException(nameof(key));
    private bool _disposed;

    /// <summary>
    /// Moves keyslot 0 of <paramref name="disk"/> from the held key to <paramref name="newKey"/> and holds the new key once
    /// the keyslot opens with it. Idempotent: the held key already being the new one (a rerun after the flip, or a reboot
    /// whose key race won with the new key) or a keyslot that already opens with it is
    /// <see cref="DiskKeyRotationResult.AlreadyRotated"/>; <see cref="DiskKeyRotationResult.Rejected"/> changes nothing.
    /// </summary>
    public DiskKeyRotationResult MoveTo(StateDisk disk, ReadOnlySpan<byte> newKey)
    {
        ArgumentNullException.ThrowIfNull(disk);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (newKey.Length == _key.Length && CryptographicOperations.FixedTimeEquals(newKey, _key.Span))
            {
                return DiskKeyRotationResult.AlreadyRotated;
            }
            var result = disk.RotateKey(_key.Span, newKey);
            if (result != DiskKeyRotationResult.Rejected)
            {
                _key.Dispose();
                _key = SecretBytes.CopyOf(newKey);
            }
            return result;
        }
    }

    /// <summary>True when the held key equals <paramref name="key"/> (constant-time).</summary>
    public bool Is(ReadOnlySpan<byte> key)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return key.Length == _key.Length && CryptographicOperations.FixedTimeEquals(key, _key.Span);
        }
    }

    public override string ToString() => "[redacted]";

    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            _key.Dispose();
        }
    }
}
