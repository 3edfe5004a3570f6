using System.Buffers;
using System.Net.Sockets;

namespace Asterism.Cloud.Local;

/// <summary>
/// One client↔backend pair: copies both directions, passes a half-close (FIN) on to the other side, and aborts
/// both sockets with RST when either side resets. Both sockets are disposed when it ends.
/// </summary>
internal sealed class ForwardedConnection(Socket client, Socket backend)
{
    private const int BufferSize = 64 * 1024;
    private readonly CancellationTokenSource _abort = new();

    public async Task RunAsync(CancellationToken ct)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _abort.Token);
        var up = CopyAsync(client, backend, linked);
        var down = CopyAsync(backend, client, linked);
        try
        {
            if (!await up.ConfigureAwait(false) | !await down.ConfigureAwait(false))
            {
                Reset(client);
                Reset(backend);
            }
        }
        finally
        {
            client.Dispose();
            backend.Dispose();
            _abort.Dispose();
        }
    }

    /// <summary>Stops forwarding (provider shutdown).</summary>
    public void Abort()
    {
        try
        {
            _abort.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>Closes with RST (linger 0) so the peer sees a reset, not a clean end of stream.</summary>
    public static void Reset(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
        socket.Dispose();
    }

    /// <summary>Copies until end of stream (then half-closes the target: true) or an error/abort (false, and cancels the other direction).</summary>
    private static async Task<bool> CopyAsync(Socket from, Socket to, CancellationTokenSource linked)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            while (true)
            {
                var n = await from.ReceiveAsync(buffer.AsMemory(0, BufferSize), SocketFlags.None, linked.Token).ConfigureAwait(false);
                if (n == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return true;
                }
                await to.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, linked.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            try
            {
                await linked.CancelAsync().ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
            }
            return false;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
