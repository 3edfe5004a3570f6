using System.Buffers;
using System.Security.Cryptography;

namespace Asterism.Disk;

/// <summary>
/// The decrypted view of a LUKS2 payload: 4096-byte sectors encrypted with aes-xts-plain64, the tweak of sector n
/// being n × 8 (dm-crypt counts IVs in 512-byte units; iv_tweak 0). Each multi-sector write is one device write.
/// </summary>
public sealed class EncryptedVolume : IDisposable
{
    /// <summary>Sector size in bytes.</summary>
    public const int SectorSize = Luks2Metadata.SectorSize;

    private const int UnitsPerSector = SectorSize / 512;
    private readonly IBlockDevice _device;
    private readonly AesXts _cipher;

    /// <summary>Creates the view; the device stays owned by the caller.</summary>
    public EncryptedVolume(IBlockDevice device, long payloadOffset, VolumeKey volumeKey)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(volumeKey);
        if (payloadOffset < 0 || payloadOffset % SectorSize != 0 || payloadOffset > device.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(payloadOffset));
        }
        _device = device;
        PayloadOffset = payloadOffset;
        _cipher = volumeKey.CreateCipher();
    }

    /// <summary>Byte offset of sector 0 in the device.</summary>
    public long PayloadOffset { get; }

    /// <summary>Number of whole sectors in the payload.</summary>
    public long SectorCount => (_device.Length - PayloadOffset) / SectorSize;

    /// <summary>Reads and decrypts whole sectors starting at <paramref name="firstSector"/>.</summary>
    public void ReadSectors(long firstSector, Span<byte> buffer)
    {
        CheckRange(firstSector, buffer.Length);
        _device.Read(PayloadOffset + (firstSector * SectorSize), buffer);
        _cipher.DecryptUnits(buffer, buffer, SectorSize, (ulong)firstSector * UnitsPerSector, UnitsPerSector);
    }

    /// <summary>Encrypts and writes whole sectors starting at <paramref name="firstSector"/> (one device write).</summary>
    public void WriteSectors(long firstSector, ReadOnlySpan<byte> data)
    {
        CheckRange(firstSector, data.Length);
        var buffer = ArrayPool<byte>.Shared.Rent(data.Length);
        try
        {
            var span = buffer.AsSpan(0, data.Length);
            _cipher.EncryptUnits(data, span, SectorSize, (ulong)firstSector * UnitsPerSector, UnitsPerSector);
            _device.Write(PayloadOffset + (firstSector * SectorSize), span);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(buffer.AsSpan(0, data.Length));
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Makes previous writes durable.</summary>
    public void Flush() => _device.Flush();

    /// <inheritdoc />
    public void Dispose() => _cipher.Dispose();

    private void CheckRange(long firstSector, int length)
    {
        if (length <= 0 || length % SectorSize != 0)
        {
            throw new ArgumentException("I/O must cover whole 4096-byte sectors.");
        }
        if (firstSector < 0 || firstSector > SectorCount - (length / SectorSize))
        {
            throw new ArgumentOutOfRangeException(nameof(firstSector), "Sector range lies outside the payload.");
        }
    }
}
