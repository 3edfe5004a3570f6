using System.Buffers;
using System.Security.Cryptography;
using Asterism.Disk;

namespace Asterism.StateFs;

/// <summary>
/// The decrypted payload of an unlocked LUKS2 image as a byte-addressed <see cref="IBlockDevice"/>, what
/// <c>cryptsetup open</c> would map: 4096-byte sectors of aes-xts-plain64 (tweak of sector n = n × 8, dm-crypt's
/// 512-byte IV units; the header's strict validation guarantees exactly this format). Reads decrypt, writes encrypt;
/// a request not covering whole sectors reads, decrypts and merges its partial first and last sectors and writes
/// whole sectors back (read-modify-write) while holding that sector range exclusively. Safe for concurrent
/// callers. <see cref="Flush"/> is fsync of the image file. Disposing zeroes the cipher's round keys.
/// </summary>
public sealed class Luks2PayloadDevice : IBlockDevice
{
    /// <summary>Sector size of the payload.</summary>
    public const int SectorSize = Luks2Metadata.SectorSize;

    private const int UnitsPerSector = SectorSize / 512;
    private readonly IBlockDevice _image;
    private readonly bool _ownsImage;
    private readonly AesXts _cipher;
    private readonly long _payloadOffset;
    private readonly SectorRangeLock _ranges = new();
    private int _disposed;

    /// <summary>Wraps an image whose payload starts at <paramref name="payloadOffset"/>; the key stays owned by the caller.</summary>
    /// <param name="image">The whole LUKS2 image.</param>
    /// <param name="payloadOffset">Byte offset of the encrypted payload (the header's segment offset).</param>
    /// <param name="volumeKey">The unlocked volume key; only used to build the cipher.</param>
    /// <param name="ownsImage">Dispose <paramref name="image"/> with this device.</param>
    /// <param name="readOnly">Refuse every write (<see cref="IsReadOnly"/>): the offline disaster tools must not be
    /// able to change the image they rescue data from, whatever the layers above them try.</param>
    public Luks2PayloadDevice(IBlockDevice image, long payloadOffset, VolumeKey volumeKey, bool ownsImage, bool readOnly = false)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(volumeKey);
        if (payloadOffset <= 0 || payloadOffset % SectorSize != 0 || payloadOffset >= image.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(payloadOffset), "The payload must start at a sector boundary inside the image.");
        }
        _image = image;
        _ownsImage = ownsImage;
        IsReadOnly = readOnly;
        _payloadOffset = payloadOffset;
        // dm-crypt maps the whole sectors after the payload offset ("size": "dynamic"); a trailing partial sector is not part of it.
        Length = (image.Length - payloadOffset) / SectorSize * SectorSize;
        _cipher = volumeKey.CreateCipher();
    }

    /// <summary>
    /// Opens <paramref name="imagePath"/> read-write, unlocks <paramref name="keyslot"/> with <paramref name="passphrase"/>
    /// and returns the payload device, or null when the passphrase does not open that slot. The volume key is zeroed
    /// as soon as the cipher holds its round keys. Throws <see cref="Luks2HeaderException"/> for a refused header.
    /// </summary>
    public static Luks2PayloadDevice? Open(string imagePath, ReadOnlySpan<byte> passphrase, int keyslot = 0) =>
        OpenCore(imagePath, passphrase, keyslot, readOnly: false);

    /// <summary>Opens <paramref name="imagePath"/> read-only (a read-only file or copy works); otherwise as <see cref="Open"/>. Writes throw.</summary>
    public static Luks2PayloadDevice? OpenReadOnly(string imagePath, ReadOnlySpan<byte> passphrase, int keyslot = 0) =>
        OpenCore(imagePath, passphrase, keyslot, readOnly: true);

    private static Luks2PayloadDevice? OpenCore(string imagePath, ReadOnlySpan<byte> passphrase, int keyslot, bool readOnly)
    {
        var file = FileBlockDevice.Open(imagePath, writable: !readOnly);
        try
        {
            using var header = Luks2Image.Open(file, ownsDevice: false);
            if (header.Unlock(passphrase, out var key, keyslot) != KeyCheckResult.Accepted)
            {
                file.Dispose();
                return null;
            }
            using (key)
            {
                return new Luks2PayloadDevice(file, header.Header.Metadata.SegmentOffset, key!, ownsImage: true, readOnly: readOnly);
            }
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>True when every <see cref="Write"/> is refused.</summary>
    public bool IsReadOnly { get; }

    /// <summary>Payload size in bytes (whole sectors).</summary>
    public long Length { get; }

    /// <summary>Byte offset of the payload in the image.</summary>
    public long PayloadOffset => _payloadOffset;

    /// <summary>Ranges locked right now (tests show locks are released).</summary>
    internal int LockedRanges => _ranges.HeldCount;

    /// <inheritdoc />
    public void Read(long offset, Span<byte> buffer)
    {
        CheckRange(offset, buffer.Length);
        if (buffer.IsEmpty)
        {
            return;
        }
        var first = offset / SectorSize;
        var end = (offset + buffer.Length + SectorSize - 1) / SectorSize;
        using var held = _ranges.Acquire(first, end, exclusive: false);
        if (offset % SectorSize == 0 && buffer.Length % SectorSize == 0)
        {
            ReadSectors(first, buffer);
            return;
        }
        var span = checked((int)((end - first) * SectorSize));
        var scratch = ArrayPool<byte>.Shared.Rent(span);
        try
        {
            ReadSectors(first, scratch.AsSpan(0, span));
            scratch.AsSpan((int)(offset - (first * SectorSize)), buffer.Length).CopyTo(buffer);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(scratch.AsSpan(0, span));
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    /// <inheritdoc />
    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        CheckRange(offset, data.Length);
        if (IsReadOnly)
        {
            throw new InvalidOperationException("The payload device is read-only.");
        }
        if (data.IsEmpty)
        {
            return;
        }
        var first = offset / SectorSize;
        var end = (offset + data.Length + SectorSize - 1) / SectorSize;
        var span = checked((int)((end - first) * SectorSize));
        var scratch = ArrayPool<byte>.Shared.Rent(span);
        var work = scratch.AsSpan(0, span);
        try
        {
            using var held = _ranges.Acquire(first, end, exclusive: true);
            var head = (int)(offset - (first * SectorSize));
            var tail = span - head - data.Length;
            if (head != 0)
            {
                ReadSectors(first, work[..SectorSize]);
            }
            if (tail != 0 && (end - 1 != first || head == 0))
            {
                ReadSectors(end - 1, work[^SectorSize..]);
            }
            data.CopyTo(work[head..]);
            _cipher.EncryptUnits(work, work, SectorSize, (ulong)first * UnitsPerSector, UnitsPerSector);
            _image.Write(_payloadOffset + (first * SectorSize), work);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(work);
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    /// <inheritdoc />
    public void Flush()
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        _image.Flush();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _cipher.Dispose();
        if (_ownsImage)
        {
            _image.Dispose();
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"Luks2PayloadDevice {Length} bytes [key redacted]";

    private void ReadSectors(long first, Span<byte> buffer)
    {
        _image.Read(_payloadOffset + (first * SectorSize), buffer);
        _cipher.DecryptUnits(buffer, buffer, SectorSize, (ulong)first * UnitsPerSector, UnitsPerSector);
    }

    private void CheckRange(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (offset < 0 || length < 0 || offset > Length - length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), "I/O outside the payload.");
        }
    }
}
