using System.Buffers.Binary;
using System.Net.Sockets;

namespace Asterism.Tpm;

/// <summary>
/// swtpm's command socket with the Microsoft-simulator framing: request <c>u32be 8 (TPM_SEND_COMMAND), u8 locality,
/// u32be length, command</c>; response <c>u32be length, response, u32be 0</c>; <c>u32be 20</c> ends the session.
/// The socket is a Unix domain socket in a 0700 directory, so only its owner (the provider while it measures and
/// certifies, then the node) can connect: filesystem permissions are the TPM's access control. The other way round, a
/// socket whose server is neither this user nor root (SO_PEERCRED) is refused before a byte is sent: a path in a
/// directory others can write could be another user's listener, and commands carry hierarchy auth in clear.
/// swtpm serves one connection at a time, so hold one per TPM.
/// </summary>
public sealed class SwtpmSocketTransport : ITpmTransport
{
    /// <summary>Longest socket path the kernel accepts (sun_path is 108 bytes with its terminating NUL).</summary>
    public const int MaxSocketPathLength = 107;

    private const uint SendCommand = 8;
    private const uint SessionEnd = 20;

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly int _maxResponseSize;
    private bool _broken;
    private bool _disposed;

    private SwtpmSocketTransport(Socket socket, int maxResponseSize)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _maxResponseSize = maxResponseSize;
    }

    /// <summary>The locality sent with each command (0 unless a test wants another).</summary>
    public byte Locality { get; init; }

    /// <summary>
    /// Parses a node's <c>--tpm</c> value: <c>unix:/abs/path</c> or <c>/abs/path</c>. Anything else — a TCP HOST:PORT
    /// above all, which every local process could dial — is refused with <see cref="ArgumentException"/>.
    /// </summary>
    public static string ParseSocketArgument(string? value)
    {
        var path = value is not null && value.StartsWith("unix:", StringComparison.Ordinal) ? value["unix:".Length..] : value;
        if (string.IsNullOrEmpty(path) || !Path.IsPathFullyQualified(path) || path.Contains('\0')
            || System.Text.Encoding.UTF8.GetByteCount(path) > MaxSocketPathLength)
        {
            throw new ArgumentException("the tpm variant needs --tpm unix:/absolute/path/to/tpm.sock or a TPM device such as /dev/tpmrm0 (TCP endpoints are refused)");
        }
        return path;
    }

    /// <summary>Connects to swtpm's command socket at <paramref name="socketPath"/> (an absolute path).</summary>
    public static async Task<SwtpmSocketTransport> ConnectAsync(string socketPath, int maxResponseSize, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxResponseSize, TpmConst.HeaderSize);
        var socket = await ConnectUnixAsync(socketPath, cancellationToken).ConfigureAwait(false);
        return new SwtpmSocketTransport(socket, maxResponseSize);
    }

    /// <summary>Opens a stream socket to a Unix socket path; failures become <see cref="TpmException"/>.</summary>
    internal static async Task<Socket> ConnectUnixAsync(string socketPath, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(socketPath);
        if (!Path.IsPathFullyQualified(socketPath))
        {
            throw new ArgumentException("the swtpm socket path must be absolute", nameof(socketPath));
        }
        if (System.Text.Encoding.UTF8.GetByteCount(socketPath) > MaxSocketPathLength)
        {
            throw new ArgumentException($"the swtpm socket path is longer than {MaxSocketPathLength} bytes", nameof(socketPath));
        }
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            // EACCES when another user tries: the 0700 directory is doing its job.
            throw new TpmException($"cannot connect to swtpm at {socketPath}: {e.SocketErrorCode}", e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        var peer = PeerUid(socket);
        if (peer is not { } uid || (uid != 0 && uid != EffectiveUid.Value))
        {
            socket.Dispose();
            throw new TpmException($"the socket {socketPath} is served by another user (uid {peer?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unknown"}), not by this user or root; nothing was sent");
        }
        return socket;
    }

    private static readonly Lazy<uint> EffectiveUid = new(() =>
    {
        // The second field of "Uid:" in /proc/self/status is the effective uid.
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal));
        return uint.Parse(line[4..].Split(['\t', ' '], StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
    });

    // struct ucred { pid_t pid; uid_t uid; gid_t gid; } from SO_PEERCRED (SOL_SOCKET 1, option 17 on Linux).
    private static uint? PeerUid(Socket socket)
    {
        try
        {
            var credentials = new byte[12];
            return socket.GetRawSocketOption(1, 17, credentials) == credentials.Length
                ? System.Runtime.InteropServices.MemoryMarshal.Read<uint>(credentials.AsSpan(4))
                : null;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return null;
        }
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
        finally
        {
            // The frame may carry authorisation values (passwords, hierarchy auth).
            Array.Clear(frame);
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
