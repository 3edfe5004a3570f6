using Microsoft.Win32.SafeHandles;

namespace Asterism.Disk;

/// <summary>
/// Byte-addressed storage under a LUKS2 image. Every write goes through <see cref="Write"/>, so a wrapper can cut
/// writes at any boundary to simulate a power cut.
/// </summary>
public interface IBlockDevice : IDisposable
{
    /// <summary>Current length in bytes.</summary>
    long Length { get; }

    /// <summary>Reads exactly <paramref name="buffer"/>.Length bytes; throws <see cref="EndOfStreamException"/> past the end.</summary>
    void Read(long offset, Span<byte> buffer);

    /// <summary>Writes all of <paramref name="data"/> at <paramref name="offset"/>.</summary>
    void Write(long offset, ReadOnlySpan<byte> data);

    /// <summary>Makes previous writes durable (fsync).</summary>
    void Flush();
}

/// <summary>An image file accessed with positional I/O; <see cref="Flush"/> is fsync.</summary>
public sealed class FileBlockDevice : IBlockDevice
{
    private readonly SafeFileHandle _handle;

    private FileBlockDevice(SafeFileHandle handle, string path, bool writable)
    {
        _handle = handle;
        Path = path;
        IsWritable = writable;
    }

    /// <summary>Path of the image file.</summary>
    public string Path { get; }

    /// <summary>Whether the file was opened for writing.</summary>
    public bool IsWritable { get; }

    /// <inheritdoc />
    public long Length => RandomAccess.GetLength(_handle);

    /// <summary>Opens an existing image.</summary>
    public static FileBlockDevice Open(string path, bool writable) =>
        new(File.OpenHandle(path, FileMode.Open, writable ? FileAccess.ReadWrite : FileAccess.Read,
            writable ? FileShare.Read : FileShare.ReadWrite), path, writable);

    /// <summary>Creates (or truncates) a sparse image of <paramref name="length"/> bytes.</summary>
    public static FileBlockDevice Create(string path, long length)
    {
        var handle = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.Read);
        RandomAccess.SetLength(handle, length);
        return new FileBlockDevice(handle, path, writable: true);
    }

    /// <inheritdoc />
    public void Read(long offset, Span<byte> buffer)
    {
        while (buffer.Length > 0)
        {
            var n = RandomAccess.Read(_handle, buffer, offset);
            if (n <= 0)
            {
                throw new EndOfStreamException("Read past the end of the image.");
            }
            buffer = buffer[n..];
            offset += n;
        }
    }

    /// <inheritdoc />
    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        if (!IsWritable)
        {
            throw new InvalidOperationException($"The image {Path} is open read-only.");
        }
        RandomAccess.Write(_handle, data, offset);
    }

    /// <inheritdoc />
    public void Flush() => RandomAccess.FlushToDisk(_handle);

    /// <inheritdoc />
    public void Dispose() => _handle.Dispose();
}

/// <summary>An in-memory device (tests, tools); its contents can be snapshotted.</summary>
public sealed class MemoryBlockDevice : IBlockDevice
{
    private readonly byte[] _data;

    /// <summary>Creates a zero-filled device.</summary>
    public MemoryBlockDevice(long length) => _data = new byte[length];

    /// <summary>Wraps a copy of existing contents.</summary>
    public MemoryBlockDevice(ReadOnlySpan<byte> contents) => _data = contents.ToArray();

    /// <inheritdoc />
    public long Length => _data.LongLength;

    /// <summary>A copy of the current contents.</summary>
    public byte[] Snapshot() => (byte[])_data.Clone();

    /// <inheritdoc />
    public void Read(long offset, Span<byte> buffer)
    {
        if (offset < 0 || offset > _data.LongLength - buffer.Length)
        {
            throw new EndOfStreamException("Read past the end of the device.");
        }
        _data.AsSpan(checked((int)offset), buffer.Length).CopyTo(buffer);
    }

    /// <inheritdoc />
    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        if (offset < 0 || offset > _data.LongLength - data.Length)
        {
            throw new IOException("Write past the end of the device.");
        }
        data.CopyTo(_data.AsSpan(checked((int)offset)));
    }

    /// <inheritdoc />
    public void Flush()
    {
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }
}
