using System.Collections.Concurrent;

namespace Asterism.Disk;

/// <summary>What <see cref="StateDisk.Probe"/> found at a path.</summary>
public enum StateDiskKind
{
    /// <summary>No file.</summary>
    Missing,

    /// <summary>A file without a LUKS2 header (e.g. a fresh, zeroed image).</summary>
    NotLuks,

    /// <summary>A LUKS2 header that is refused (hostile, corrupt, unsupported); see the reason.</summary>
    Invalid,

    /// <summary>A valid header whose state-disk token is absent or false.</summary>
    Uninitialized,

    /// <summary>A valid header whose state-disk token says the disk is initialized: never reformat it.</summary>
    Initialized,
}

/// <summary>Result of probing an image path.</summary>
/// <param name="Kind">What was found.</param>
/// <param name="Uuid">The LUKS2 UUID (lowercase) when the header is valid.</param>
/// <param name="InvalidReason">Why the header was refused, for <see cref="StateDiskKind.Invalid"/>.</param>
/// <param name="Message">Human-readable detail for Invalid (no secrets).</param>
public sealed record StateDiskProbe(StateDiskKind Kind, string? Uuid, Luks2HeaderError? InvalidReason, string? Message);

/// <summary>
/// A node's encrypted state disk: a LUKS2 image (see <see cref="Luks2Image"/>) whose payload holds a
/// <see cref="RecordStore"/>. Opening takes no key; <see cref="TryUnlock(ReadOnlySpan{byte})"/> is the only check of
/// a delivered key (the node's KeyRace calls it). One lock per image path serialises every operation, including
/// concurrent unlock attempts. Disposing zeroes the volume key.
/// </summary>
public sealed class StateDisk : IDisposable
{
    private static readonly ConcurrentDictionary<string, Lock> Locks = new(StringComparer.Ordinal);

    private readonly Lock _gate;
    private readonly Luks2Image _image;
    private VolumeKey? _volumeKey;
    private EncryptedVolume? _volume;
    private RecordStore? _store;
    private bool _disposed;

    private StateDisk(string path, Luks2Image image)
    {
        ImagePath = path;
        _image = image;
        _gate = Locks.GetOrAdd(path, _ => new Lock());
    }

    /// <summary>Full path of the image.</summary>
    public string ImagePath { get; }

    /// <summary>LUKS2 UUID, lowercase.</summary>
    public string Uuid
    {
        get
        {
            lock (_gate)
            {
                return _image.Header.Uuid;
            }
        }
    }

    /// <summary>The validated header (for inspection).</summary>
    public Luks2Header Header
    {
        get
        {
            lock (_gate)
            {
                return _image.Header;
            }
        }
    }

    /// <summary>Whether token 0 says the disk is initialized.</summary>
    public bool IsInitialized
    {
        get
        {
            lock (_gate)
            {
                return ReadInitialized(_image);
            }
        }
    }

    /// <summary>Whether <see cref="TryUnlock"/> succeeded and <see cref="Store"/> is available.</summary>
    public bool IsUnlocked
    {
        get
        {
            lock (_gate)
            {
                return _store is not null;
            }
        }
    }

    /// <summary>The record store of the unlocked volume.</summary>
    public RecordStore Store
    {
        get
        {
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                return _store ?? throw new InvalidOperationException("The state disk is locked.");
            }
        }
    }

    /// <summary>Classifies <paramref name="imagePath"/> without changing it; hostile headers give Invalid, never an exception.</summary>
    public static StateDiskProbe Probe(string imagePath)
    {
        ArgumentNullException.ThrowIfNull(imagePath);
        if (!File.Exists(imagePath))
        {
            return new StateDiskProbe(StateDiskKind.Missing, null, null, null);
        }
        try
        {
            using var device = FileBlockDevice.Open(imagePath, writable: false);
            var header = Luks2Header.Read(device);
            var initialized = header.Metadata.Tokens.TryGetValue(StateDiskToken.Id, out var raw) && IsStateToken(raw) && StateDiskToken.Parse(raw);
            return new StateDiskProbe(initialized ? StateDiskKind.Initialized : StateDiskKind.Uninitialized, header.Uuid, null, null);
        }
        catch (Luks2HeaderException e) when (e.Reason == Luks2HeaderError.NotLuks)
        {
            return new StateDiskProbe(StateDiskKind.NotLuks, null, null, e.Message);
        }
        catch (Luks2HeaderException e) when (e.Reason == Luks2HeaderError.Truncated && !HasMagic(imagePath))
        {
            return new StateDiskProbe(StateDiskKind.NotLuks, null, null, e.Message);
        }
        catch (Luks2HeaderException e)
        {
            return new StateDiskProbe(StateDiskKind.Invalid, null, e.Reason, e.Message);
        }
    }

    /// <summary>
    /// Creates (or overwrites) the image with a new LUKS2 volume, keyslot 0 for <paramref name="passphrase"/> and
    /// token 0 = not initialized. Refuses to overwrite an image whose token says Initialized. <paramref name="uuid"/>
    /// is the disk's LUKS2 UUID (the one its node's certified identity owns); null makes a random one.
    /// </summary>
    public static StateDisk Format(string imagePath, long sizeBytes, ReadOnlySpan<byte> passphrase, string? uuid = null)
    {
        ArgumentNullException.ThrowIfNull(imagePath);
        var path = Path.GetFullPath(imagePath);
        var gate = Locks.GetOrAdd(path, _ => new Lock());
        lock (gate)
        {
            // Only a missing file, a file without a LUKS2 header, or a disk whose token says "not initialized" may be
            // formatted: an initialized disk never, and a refused header neither (it may be an attack, or a disk
            // whose token we cannot read: reformatting would destroy data).
            var kind = Probe(path).Kind;
            if (kind is not (StateDiskKind.Missing or StateDiskKind.NotLuks or StateDiskKind.Uninitialized))
            {
                throw new InvalidOperationException(kind == StateDiskKind.Initialized
                    ? "Refusing to format an initialized state disk."
                    : "Refusing to format a state disk whose header is refused.");
            }
            var device = FileBlockDevice.Create(path, sizeBytes);
            try
            {
                var image = Luks2Image.Format(device, ownsDevice: true, passphrase, new Luks2FormatOptions { Uuid = uuid });
                image.SetToken(StateDiskToken.Id, StateDiskToken.Serialize(false));
                return new StateDisk(path, image);
            }
            catch
            {
                device.Dispose();
                throw;
            }
        }
    }

    /// <summary>
    /// Opens an existing image read-write; takes no key (see <see cref="TryUnlock(ReadOnlySpan{byte})"/>). Throws
    /// <see cref="Luks2HeaderException"/> when the header is refused, including one over the KDF budget.
    /// </summary>
    public static StateDisk Open(string imagePath) => Open(imagePath, writable: true);

    /// <summary>
    /// Opens an existing image read-only (offline extraction; a read-only file works): unlocking and reading records
    /// work, every update throws <see cref="InvalidOperationException"/>.
    /// </summary>
    public static StateDisk OpenReadOnly(string imagePath) => Open(imagePath, writable: false);

    private static StateDisk Open(string imagePath, bool writable)
    {
        ArgumentNullException.ThrowIfNull(imagePath);
        var path = Path.GetFullPath(imagePath);
        var gate = Locks.GetOrAdd(path, _ => new Lock());
        lock (gate)
        {
            var image = Luks2Image.Open(path, writable);
            try
            {
                _ = ReadInitialized(image);
                return new StateDisk(path, image);
            }
            catch
            {
                image.Dispose();
                throw;
            }
        }
    }

    /// <summary>Sets token 0's diskIsInitialized (crash-safe header update; other tokens are kept).</summary>
    public void SetInitialized(bool initialized)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _image.SetToken(StateDiskToken.Id, StateDiskToken.Serialize(initialized));
        }
    }

    /// <summary>
    /// Unlocks with keyslot 0 (where the node's derived disk key lives; no other slot is tried) and opens the record
    /// store; false when the passphrase is rejected.
    /// </summary>
    public bool TryUnlock(ReadOnlySpan<byte> passphrase) => TryUnlock(passphrase, 0);

    /// <summary>
    /// Unlocks with <paramref name="keyslot"/> only (offline tools' <c>--keyslot</c>) and opens the record store;
    /// false when the slot does not exist or the passphrase does not open it.
    /// </summary>
    public bool TryUnlock(ReadOnlySpan<byte> passphrase, int keyslot)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_store is not null)
            {
                return _image.CheckKey(passphrase, keyslot) == KeyCheckResult.Accepted;
            }
            if (_image.Unlock(passphrase, out var key, keyslot) != KeyCheckResult.Accepted)
            {
                return false;
            }
            var volume = new EncryptedVolume(_image.Device, _image.Header.Metadata.SegmentOffset, key!);
            try
            {
                _store = RecordStore.Open(volume);
            }
            catch
            {
                volume.Dispose();
                key!.Dispose();
                throw;
            }
            _volumeKey = key;
            _volume = volume;
            return true;
        }
    }

    /// <summary>Replaces keyslot 0's passphrase; Rejected (nothing changed) when <paramref name="oldPassphrase"/> is wrong.</summary>
    public KeyCheckResult ChangePassphrase(ReadOnlySpan<byte> oldPassphrase, ReadOnlySpan<byte> newPassphrase)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _image.ChangePassphrase(0, oldPassphrase, newPassphrase);
        }
    }

    /// <summary>Moves keyslot 0 from <paramref name="oldKey"/> to <paramref name="newKey"/> (<see cref="DiskKeyRotation"/>).</summary>
    public DiskKeyRotationResult RotateKey(ReadOnlySpan<byte> oldKey, ReadOnlySpan<byte> newKey)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return DiskKeyRotation.Rotate(_image, oldKey, newKey);
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"StateDisk {ImagePath} [key redacted]";

    /// <inheritdoc />
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            _store = null;
            _volume?.Dispose();
            _volumeKey?.Dispose();
            _image.Dispose();
        }
    }

    private static bool IsStateToken(string raw) => StateDiskToken.IsStateDiskToken(raw);

    private static bool ReadInitialized(Luks2Image image)
    {
        if (!image.Header.Metadata.Tokens.TryGetValue(StateDiskToken.Id, out var raw))
        {
            return false;
        }
        return IsStateToken(raw) && StateDiskToken.Parse(raw);
    }

    private static bool HasMagic(string path)
    {
        try
        {
            using var f = File.OpenRead(path);
            Span<byte> magic = stackalloc byte[6];
            return f.Read(magic) == 6 && (magic.SequenceEqual(Luks2Header.MagicPrimary) || magic.SequenceEqual(Luks2Header.MagicSecondary));
        }
        catch (IOException)
        {
            return false;
        }
    }
}
