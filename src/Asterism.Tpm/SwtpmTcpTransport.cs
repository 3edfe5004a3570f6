using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Asterism.Tpm;

/// <summary>
/// swtpm's command port with the Microsoft-simulator framing: request <c>u32be 8 (TPM_SEND_COMMAND), u8 locality,
/// u32be length, command</c>; response <c>u32be length, response, u32be 0</c>; <c>u32be 20</c> ends the session.
/// Loopback only. swtpm serves one connection at a time, so hold one per TPM.
/// </summary>
public sealed class SwtpmTcpTransport : ITpmTransport
{
    private const uint SendCommand = 8;
    private const uint SessionEnd = 20;

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly int _maxResponseSize;
    private bool _broken;
    private bool _disposed;

    private SwtpmTcpTransport(Socket socket, int maxResponseSize)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _maxResponseSize = maxResponseSize;
    }

    /// <summary>The locality sent with each command (0 unless a test wants another).</summary>
    public byte Locality { get; init; }

    /// <summary>Connects to a swtpm command port on a loopback address.</summary>
    public static async Task<SwtpmTcpTransport> ConnectAsync(IPEndPoint endpoint, int maxResponseSize, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        if (!IPAddress.IsLoopback(endpoint.Address))
        {
            throw new ArgumentException("swtpm is only reached on a loopback address", nameof(endpoint));
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(maxResponseSize, TpmConst.HeaderSize);
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(endpoint, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new TpmException($"cannot connect to swtpm at {endpoint}: {e.SocketErrorCode}", e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new SwtpmTcpTransport(socket, maxResponseSize);
    }

    public async ValueTask<byte[]> TransmitAsync(ReadOnlyMemory<byte> command, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_broken)
        {
            throw new TpmException("the swtpm connection is broken by an earlier failure; reconnect");
        }
        var frame = new byte[9 + command.Length];
        BinaryPrimitives.WriteUInt32BigEndian(frame, SendCommand);
        frame[4] = Locality;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(5), (uint)command.Length);
        command.Span.CopyTo(frame.AsSpan(9));
        _broken = true;
        try
        {
            await _stream.WriteAsync(frame, cancellationToken).ConfigureAwait(false);
            var word = new byte[4];
            await _stream.ReadExactlyAsync(word, cancellationToken).ConfigureAwait(false);
            var length = BinaryPrimitives.ReadUInt32BigEndian(word);
            if (length < TpmConst.HeaderSize || length > (uint)_maxResponseSize)
            {
                throw new TpmFormatException($"swtpm framed a response of {length} bytes (allowed {TpmConst.HeaderSize}-{_maxResponseSize})");
            }
            var response = new byte[length];
            await _stream.ReadExactlyAsync(response, cancellationToken).ConfigureAwait(false);
            await _stream.ReadExactlyAsync(word, cancellationToken).ConfigureAwait(false);
            if (BinaryPrimitives.ReadUInt32BigEndian(word) != 0)
            {
                throw new TpmFormatException("swtpm response trailer is not 0");
            }
            _broken = false;
            return response;
        }
        catch (Exception e) when (e is IOException or SocketException or EndOfStreamException)
        {
            throw new TpmException("swtpm connection failed: " + e.Message, e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        if (!_broken)
        {
            try
            {
                var end = new byte[4];
                BinaryPrimitives.WriteUInt32BigEndian(end, SessionEnd);
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                await _stream.WriteAsync(end, cts.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException)
            {
                // Closing anyway; swtpm drops the session when the socket closes.
            }
        }
        await _stream.DisposeAsync().ConfigureAwait(false);
        _socket.Dispose();
    }
}
