namespace Asterism.Disk.Tests;

/// <summary>Thrown by <see cref="CrashingBlockDevice"/> at the simulated power cut.</summary>
internal sealed class PowerCutException : IOException
{
    public PowerCutException()
        : base("simulated power cut")
    {
    }
}

/// <summary>
/// Simulates a disk with a volatile write cache: writes since the last flush are pending; at the power cut (the
/// N-th write) a random subset of the pending writes reaches the medium, each whole, torn at a 512-byte boundary
/// or not at all, and the cut write itself is torn. <see cref="DurableImage"/> is what a reboot would see.
/// </summary>
internal sealed class CrashingBlockDevice : IBlockDevice
{
    private readonly MemoryBlockDevice _durable;
    private readonly List<(long Offset, byte[] Data)> _pending = [];
    private readonly int _crashAtWrite;
    private readonly Random _random;
    private bool _crashed;

    public CrashingBlockDevice(byte[] initial, int crashAtWrite, int seed)
    {
        _durable = new MemoryBlockDevice(initial);
        _crashAtWrite = crashAtWrite;
        _random = new Random(seed);
    }

    public int Writes { get; private set; }

    public long Length => _durable.Length;

    public byte[] DurableImage() => _durable.Snapshot();

    public void Read(long offset, Span<byte> buffer)
    {
        ThrowIfCrashed();
        _durable.Read(offset, buffer);
        foreach (var (o, d) in _pending)
        {
            var start = Math.Max(o, offset);
            var end = Math.Min(o + d.Length, offset + buffer.Length);
            if (start < end)
            {
                d.AsSpan((int)(start - o), (int)(end - start)).CopyTo(buffer[(int)(start - offset)..]);
            }
        }
    }

    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        ThrowIfCrashed();
        if (Writes == _crashAtWrite)
        {
            _crashed = true;
            foreach (var (o, d) in _pending)
            {
                switch (_random.Next(3))
                {
                    case 0:
                        _durable.Write(o, d);
                        break;
                    case 1:
                        _durable.Write(o, d.AsSpan(0, Torn(d.Length)));
                        break;
                }
            }
            _durable.Write(offset, data[..Torn(data.Length)]);
            throw new PowerCutException();
        }
        Writes++;
        _pending.Add((offset, data.ToArray()));
    }

    public void Flush()
    {
        ThrowIfCrashed();
        foreach (var (o, d) in _pending)
        {
            _durable.Write(o, d);
        }
        _pending.Clear();
    }

    public void Dispose()
    {
    }

    private int Torn(int length) => Math.Min(length, 512 * _random.Next(0, (length / 512) + 1));

    private void ThrowIfCrashed()
    {
        if (_crashed)
        {
            throw new PowerCutException();
        }
    }
}
