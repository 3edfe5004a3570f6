using System.Buffers.Binary;

namespace Asterism.Tpm;

/// <summary>Big-endian reader over untrusted TPM bytes: every overrun or oversize becomes a <see cref="TpmFormatException"/>.</summary>
internal ref struct TpmReader
{
    private readonly ReadOnlySpan<byte> _data;
    private int _position;

    public TpmReader(ReadOnlySpan<byte> data)
    {
        _data = data;
        _position = 0;
    }

    public readonly int Position => _position;

    public readonly int Remaining => _data.Length - _position;

    public byte ReadByte()
    {
        Need(1);
        return _data[_position++];
    }

    public ushort ReadUInt16()
    {
        Need(2);
        var v = BinaryPrimitives.ReadUInt16BigEndian(_data[_position..]);
        _position += 2;
        return v;
    }

    public uint ReadUInt32()
    {
        Need(4);
        var v = BinaryPrimitives.ReadUInt32BigEndian(_data[_position..]);
        _position += 4;
        return v;
    }

    public ulong ReadUInt64()
    {
        Need(8);
        var v = BinaryPrimitives.ReadUInt64BigEndian(_data[_position..]);
        _position += 8;
        return v;
    }

    public ReadOnlySpan<byte> ReadBytes(int count)
    {
        if (count < 0)
        {
            throw new TpmFormatException("negative length");
        }
        Need(count);
        var s = _data.Slice(_position, count);
        _position += count;
        return s;
    }

    /// <summary>Reads a TPM2B (u16 size, bytes) whose size must not exceed <paramref name="maxSize"/>.</summary>
    public ReadOnlySpan<byte> ReadSized(int maxSize, string what)
    {
        var size = ReadUInt16();
        if (size > maxSize)
        {
            throw new TpmFormatException($"{what} has {size} bytes, at most {maxSize} allowed");
        }
        return ReadBytes(size);
    }

    public readonly void ExpectEnd(string what)
    {
        if (Remaining != 0)
        {
            throw new TpmFormatException($"{Remaining} unexpected trailing bytes after {what}");
        }
    }

    private readonly void Need(int count)
    {
        if (count > _data.Length - _position)
        {
            throw new TpmFormatException($"truncated: {count} bytes needed at offset {_position}, {_data.Length - _position} left");
        }
    }
}
