using System.Buffers.Binary;

namespace Asterism.Tpm;

/// <summary>
/// A TPM character device such as <c>/dev/tpmrm0</c>: write the whole command, read the response. The kernel
/// resource manager returns the whole response to one read; short reads are continued until the size in the
/// response header has arrived.
/// </summary>
public sealed class TpmDeviceTransport : ITpmTransport
{
    /// <summary>The in-kernel resource manager device, which also flushes our transient objects when we close.</summary>
    public const string DefaultPath = "/dev/tpmrm0";

    private readonly Stream _stream;
    private readonly int _maxResponseSize;
    private bool _broken;
    private bool _disposed;

    /// <summary>Wraps an open, unbuffered duplex stream (the device, or a test double).</summary>
    public TpmDeviceTransport(Stream stream, int maxResponseSize)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxResponseSize, TpmConst.HeaderSize);
        _stream = stream;
        _maxResponseSize = maxResponseSize;
    }

    /// <summary>Opens the device read-write without buffering, so one command is one write().</summary>
    public static TpmDeviceTransport Open(string path, int maxResponseSize)
    {
        try
        {
            var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite, bufferSize: 0, FileOptions.None);
            return new TpmDeviceTransport(fs, maxResponseSize);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TpmException($"cannot open TPM device {path}: {e.Message}", e);
        }
    }

    public async ValueTask<byte[]> TransmitAsync(ReadOnlyMemory<byte> command, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_broken)
        {
            throw new TpmException("the TPM device stream is broken by an earlier failure; reopen it");
        }
        _broken = true;
        try
        {
            await _stream.WriteAsync(command, cancellationToken).ConfigureAwait(false);
            await _stream.FlushAsync(cancellationToken).ConfigureAwait(false);
            var buffer = new byte[_maxResponseSize];
            var got = 0;
            var expected = -1;
            while (expected < 0 || got < expected)
            {
                var n = await _stream.ReadAsync(buffer.AsMemory(got), cancellationToken).ConfigureAwait(false);
                if (n == 0)
                {
                    throw new TpmFormatException($"TPM device closed after {got} response bytes");
                }
                got += n;
                if (expected < 0 && got >= TpmConst.HeaderSize)
                {
                    var size = BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(2));
                    if (size < TpmConst.HeaderSize || size > (uint)_maxResponseSize)
                    {
                        throw new TpmFormatException($"TPM response header claims {size} bytes (allowed {TpmConst.HeaderSize}-{_maxResponseSize})");
                    }
                    expected = (int)size;
                }
                if (expected >= 0 && got > expected)
                {
                    throw new TpmFormatException($"TPM device returned {got} bytes for a {expected}-byte response");
                }
            }
            _broken = false;
            return buffer.AsSpan(0, got).ToArray();
        }
        catch (IOException e)
        {
            throw new TpmException("TPM device I/O failed: " + e.Message, e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        await _stream.DisposeAsync().ConfigureAwait(false);
    }
}
