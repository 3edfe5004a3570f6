using System.Buffers.Binary;

namespace Asterism.Tpm;

/// <summary>Big-endian writer for TPM command bytes.</summary>
internal sealed class TpmWriter
{
    private byte[] _buffer;
    private int _length;

    public TpmWriter(int capacity = 128)
    {
        _buffer = new byte[capacity];
    }

    public int Length => _length;

    public TpmWriter WriteByte(byte value)
    {
        Grow(1)[0] = value;
        return this;
    }

    public TpmWriter WriteUInt16(ushort value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(Grow(2), value);
        return this;
    }

    public TpmWriter WriteUInt32(uint value)
    {
        BinaryPrimitives.WriteUInt32BigEndian(Grow(4), value);
        return this;
    }

    public TpmWriter WriteUInt64(ulong value)
    {
        BinaryPrimitives.WriteUInt64BigEndian(Grow(8), value);
        return this;
    }

    public TpmWriter WriteBytes(ReadOnlySpan<byte> value)
    {
        value.CopyTo(Grow(value.Length));
        return this;
    }

    /// <summary>Writes a TPM2B: u16 size then the bytes.</summary>
    public TpmWriter WriteSized(ReadOnlySpan<byte> value)
    {
        if (value.Length > ushort.MaxValue)
        {
            throw new ArgumentException("a TPM2B holds at most 65535 bytes", nameof(value));
        }
        WriteUInt16((ushort)value.Length);
        return WriteBytes(value);
    }

    public void PatchUInt32(int offset, uint value) => BinaryPrimitives.WriteUInt32BigEndian(_buffer.AsSpan(offset, 4), value);

    public ReadOnlySpan<byte> Written => _buffer.AsSpan(0, _length);

    public byte[] ToArray() => _buffer.AsSpan(0, _length).ToArray();

    /// <summary>Overwrites the buffer (used when it held an authorization value).</summary>
    public void Clear() => Array.Clear(_buffer);

    private Span<byte> Grow(int count)
    {
        if (_length + count > _buffer.Length)
        {
            var bigger = new byte[Math.Max(_buffer.Length * 2, _length + count)];
            _buffer.AsSpan(0, _length).CopyTo(bigger);
            Array.Clear(_buffer);
            _buffer = bigger;
        }
        var span = _buffer.AsSpan(_length, count);
        _length += count;
        return span;
    }
}
