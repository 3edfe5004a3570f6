using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Asterism.Disk;

/// <summary>
/// A validated LUKS2 header: the binary header fields of the copy in use plus its JSON metadata. Both copies are
/// 16 KiB (4 KiB binary + 12 KiB JSON) at offsets 0 and 16384; the valid copy with the highest sequence id wins,
/// so an interrupted update leaves either the old or the new header readable.
/// </summary>
public sealed class Luks2Header
{
    /// <summary>Size of one header copy (binary header + JSON area).</summary>
    public const int HeaderSize = 16384;

    /// <summary>Size of the binary part.</summary>
    public const int BinarySize = 4096;

    /// <summary>Offset of the first keyslot area for a fresh header.</summary>
    public const long KeyslotAreaStart = 2L * HeaderSize;

    internal static readonly byte[] MagicPrimary = [(byte)'L', (byte)'U', (byte)'K', (byte)'S', 0xba, 0xbe];
    internal static readonly byte[] MagicSecondary = [(byte)'S', (byte)'K', (byte)'U', (byte)'L', 0xba, 0xbe];

    internal Luks2Header(string uuid, string label, string subsystem, ulong sequenceId, byte[] saltPrimary, byte[] saltSecondary, Luks2Metadata metadata)
    {
        Uuid = uuid;
        Label = label;
        Subsystem = subsystem;
        SequenceId = sequenceId;
        SaltPrimary = saltPrimary;
        SaltSecondary = saltSecondary;
        Metadata = metadata;
    }

    /// <summary>Volume UUID, lowercase.</summary>
    public string Uuid { get; }

    /// <summary>Label (usually empty).</summary>
    public string Label { get; }

    /// <summary>Subsystem (usually empty).</summary>
    public string Subsystem { get; }

    /// <summary>Sequence id of the copy in use.</summary>
    public ulong SequenceId { get; }

    /// <summary>Validated JSON metadata.</summary>
    public Luks2Metadata Metadata { get; }

    /// <summary>Whether the primary copy was valid when read.</summary>
    public bool PrimaryValid { get; private init; }

    /// <summary>Whether the secondary copy was valid when read.</summary>
    public bool SecondaryValid { get; private init; }

    internal byte[] SaltPrimary { get; }

    internal byte[] SaltSecondary { get; }

    /// <summary>Cipher of the payload (always aes-xts-plain64 once validated).</summary>
#pragma warning disable CA1822 // instance members so inspection code reads them off a header
    public string Cipher => Luks2Metadata.Cipher;

    /// <summary>Payload sector size (always 4096 once validated).</summary>
    public int SectorSize => Luks2Metadata.SectorSize;
#pragma warning restore CA1822

    /// <summary>A copy with new metadata and sequence id (for writing).</summary>
    internal Luks2Header With(Luks2Metadata metadata, ulong sequenceId) =>
        new(Uuid, Label, Subsystem, sequenceId, SaltPrimary, SaltSecondary, metadata);

    /// <summary>
    /// Reads both copies, picks the valid one with the highest sequence id and validates it strictly. Throws
    /// <see cref="Luks2HeaderException"/> for anything else; never another exception type for bad bytes.
    /// </summary>
    public static Luks2Header Read(IBlockDevice device) => Read(device, Luks2KdfCost.DefaultHeaderBudget);

    /// <summary>
    /// As <see cref="Read(IBlockDevice)"/>, with the KDF budget of the header: trying every keyslot must cost at most
    /// <paramref name="kdfBudget"/> units (<see cref="Luks2KdfCost"/>), or <see cref="Luks2HeaderError.KdfBudgetExceeded"/>.
    /// </summary>
    public static Luks2Header Read(IBlockDevice device, long kdfBudget)
    {
        ArgumentNullException.ThrowIfNull(device);
        long length;
        try
        {
            length = device.Length;
        }
        catch (IOException e)
        {
            throw new Luks2HeaderException(Luks2HeaderError.Truncated, "cannot read the image length", e);
        }
        var primary = ReadCopy(device, length, 0);
        var secondary = ReadCopy(device, length, HeaderSize);
        if (primary.Error is not null && secondary.Error is not null)
        {
            if (primary.Error.Reason == Luks2HeaderError.NotLuks
                && secondary.Error.Reason is Luks2HeaderError.NotLuks or Luks2HeaderError.Truncated)
            {
                throw primary.Error;
            }
            throw primary.Error.Reason != Luks2HeaderError.NotLuks ? primary.Error : secondary.Error;
        }
        var chosen = primary.Error is null && (secondary.Error is not null || primary.SequenceId >= secondary.SequenceId) ? primary : secondary;
        var metadata = Luks2Metadata.Parse(chosen.Json!, HeaderSize, kdfBudget);
        foreach (var ks in metadata.Keyslots.Values)
        {
            if (ks.AreaOffset + ks.AreaSize > length)
            {
                throw new Luks2HeaderException(Luks2HeaderError.Truncated, $"keyslot {ks.Id} area lies beyond the end of the image");
            }
        }
        if (metadata.SegmentOffset > length)
        {
            throw new Luks2HeaderException(Luks2HeaderError.Truncated, "the payload starts beyond the end of the image");
        }
        var otherSalt = (chosen == primary ? secondary : primary).Salt ?? RandomNumberGenerator.GetBytes(64);
        return new Luks2Header(chosen.Uuid!, chosen.Label!, chosen.Subsystem!, chosen.SequenceId,
            chosen == primary ? chosen.Salt! : otherSalt, chosen == primary ? otherSalt : chosen.Salt!, metadata)
        {
            PrimaryValid = primary.Error is null,
            SecondaryValid = secondary.Error is null,
        };
    }

    private sealed class Copy
    {
        public Luks2HeaderException? Error { get; init; }
        public ulong SequenceId { get; init; }
        public string? Uuid { get; init; }
        public string? Label { get; init; }
        public string? Subsystem { get; init; }
        public byte[]? Salt { get; init; }
        public byte[]? Json { get; init; }
    }

    private static Copy ReadCopy(IBlockDevice device, long length, long offset)
    {
        try
        {
            return ParseCopy(device, length, offset);
        }
        catch (Luks2HeaderException e)
        {
            return new Copy { Error = e };
        }
    }

    private static Copy ParseCopy(IBlockDevice device, long length, long offset)
    {
        if (length < offset + BinarySize)
        {
            throw new Luks2HeaderException(Luks2HeaderError.Truncated, "the image is shorter than the LUKS2 header");
        }
        var buf = new byte[HeaderSize];
        ReadExact(device, offset, buf.AsSpan(0, BinarySize));
        var magic = offset == 0 ? MagicPrimary : MagicSecondary;
        if (!buf.AsSpan(0, 6).SequenceEqual(magic))
        {
            throw new Luks2HeaderException(Luks2HeaderError.NotLuks, "no LUKS2 magic");
        }
        if (BinaryPrimitives.ReadUInt16BigEndian(buf.AsSpan(6)) != 2)
        {
            throw new Luks2HeaderException(Luks2HeaderError.UnsupportedVersion, "version is not 2");
        }
        if (BinaryPrimitives.ReadUInt64BigEndian(buf.AsSpan(8)) != HeaderSize)
        {
            throw new Luks2HeaderException(Luks2HeaderError.InvalidBinaryHeader, "header size is not 16384");
        }
        if (BinaryPrimitives.ReadUInt64BigEndian(buf.AsSpan(256)) != (ulong)offset)
        {
            throw new Luks2HeaderException(Luks2HeaderError.InvalidBinaryHeader, "header offset field does not match its position");
        }
        if (CString(buf.AsSpan(72, 32)) != "sha256")
        {
            throw new Luks2HeaderException(Luks2HeaderError.InvalidBinaryHeader, "checksum algorithm is not sha256");
        }
        if (length < offset + HeaderSize)
        {
            throw new Luks2HeaderException(Luks2HeaderError.Truncated, "the image is shorter than the LUKS2 JSON area");
        }
        ReadExact(device, offset + BinarySize, buf.AsSpan(BinarySize));
        Span<byte> stored = stackalloc byte[32];
        buf.AsSpan(448, 32).CopyTo(stored);
        var checksumField = buf.AsSpan(448, 64);
        if (checksumField[32..].ContainsAnyExcept((byte)0))
        {
            throw new Luks2HeaderException(Luks2HeaderError.InvalidBinaryHeader, "checksum field has trailing bytes");
        }
        checksumField.Clear();
        Span<byte> computed = stackalloc byte[32];
        SHA256.HashData(buf, computed);
        if (!CryptographicOperations.FixedTimeEquals(stored, computed))
        {
            throw new Luks2HeaderException(Luks2HeaderError.ChecksumMismatch, offset == 0 ? "primary header checksum mismatch" : "secondary header checksum mismatch");
        }
        var uuid = CString(buf.AsSpan(168, 40));
        if (!Guid.TryParseExact(uuid, "D", out _))
        {
            throw new Luks2HeaderException(Luks2HeaderError.InvalidBinaryHeader, "UUID is not canonical");
        }
        var jsonArea = buf.AsSpan(BinarySize);
        var end = jsonArea.IndexOf((byte)0);
        if (end <= 0)
        {
            throw new Luks2HeaderException(Luks2HeaderError.MalformedJson, "the JSON area is empty or not NUL-terminated");
        }
        return new Copy
        {
            SequenceId = BinaryPrimitives.ReadUInt64BigEndian(buf.AsSpan(16)),
            Uuid = uuid.ToLowerInvariant(),
            Label = CString(buf.AsSpan(24, 48)),
            Subsystem = CString(buf.AsSpan(208, 48)),
            Salt = buf.AsSpan(104, 64).ToArray(),
            Json = jsonArea[..end].ToArray(),
        };
    }

    private static void ReadExact(IBlockDevice device, long offset, Span<byte> buffer)
    {
        try
        {
            device.Read(offset, buffer);
        }
        catch (Exception e) when (e is IOException or ArgumentException)
        {
            throw new Luks2HeaderException(Luks2HeaderError.Truncated, "the image ended inside the LUKS2 header", e);
        }
    }

    private static string CString(ReadOnlySpan<byte> field)
    {
        var end = field.IndexOf((byte)0);
        if (end < 0)
        {
            throw new Luks2HeaderException(Luks2HeaderError.InvalidBinaryHeader, "a text field is not NUL-terminated");
        }
        if (field[end..].ContainsAnyExcept((byte)0))
        {
            throw new Luks2HeaderException(Luks2HeaderError.InvalidBinaryHeader, "a text field has bytes after its terminator");
        }
        var text = field[..end];
        foreach (var b in text)
        {
            if (b is < 0x20 or >= 0x7f)
            {
                throw new Luks2HeaderException(Luks2HeaderError.InvalidBinaryHeader, "a text field is not printable ASCII");
            }
        }
        return Encoding.ASCII.GetString(text);
    }

    /// <summary>Serialises one copy (0 primary, 1 secondary) with its checksum.</summary>
    internal byte[] Serialize(int copy)
    {
        var json = Metadata.ToJson();
        if (json.Length >= HeaderSize - BinarySize)
        {
            throw new InvalidOperationException("LUKS2 metadata does not fit the 12 KiB JSON area.");
        }
        var buf = new byte[HeaderSize];
        (copy == 0 ? MagicPrimary : MagicSecondary).CopyTo(buf, 0);
        BinaryPrimitives.WriteUInt16BigEndian(buf.AsSpan(6), 2);
        BinaryPrimitives.WriteUInt64BigEndian(buf.AsSpan(8), HeaderSize);
        BinaryPrimitives.WriteUInt64BigEndian(buf.AsSpan(16), SequenceId);
        Encoding.ASCII.GetBytes(Label).CopyTo(buf, 24);
        Encoding.ASCII.GetBytes("sha256").CopyTo(buf, 72);
        (copy == 0 ? SaltPrimary : SaltSecondary).CopyTo(buf, 104);
        Encoding.ASCII.GetBytes(Uuid).CopyTo(buf, 168);
        Encoding.ASCII.GetBytes(Subsystem).CopyTo(buf, 208);
        BinaryPrimitives.WriteUInt64BigEndian(buf.AsSpan(256), copy == 0 ? 0UL : HeaderSize);
        json.CopyTo(buf, BinarySize);
        SHA256.HashData(buf, buf.AsSpan(448, 32));
        return buf;
    }
}
