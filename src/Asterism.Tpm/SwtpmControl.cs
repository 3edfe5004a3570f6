using System.Buffers.Binary;
using System.Net.Sockets;

namespace Asterism.Tpm;

/// <summary>
/// swtpm's control channel (what <c>swtpm_ioctl --unix</c> speaks) on its Unix socket <c>SOCK.ctrl</c>:
/// <c>u32be command, payload</c>, answered by <c>u32be result</c> (0 = success). One command per connection.
/// </summary>
public static class SwtpmControl
{
    /// <summary>CMD_INIT: a TPM_Init, i.e. the TPM is reset as at power-on; PCRs go back to zero after the next Startup.</summary>
    public const uint CmdInit = 2;

    /// <summary>CMD_SHUTDOWN: swtpm saves its state and exits.</summary>
    public const uint CmdShutdown = 3;

    /// <summary>PTM_INIT_FLAG_DELETE_VOLATILE: forget saved volatile state, as <c>swtpm_ioctl -i</c> does.</summary>
    private const uint InitDeleteVolatile = 1;

    /// <summary>The control socket tpm2-tss's swtpm TCTI expects next to the command socket.</summary>
    public static string ControlPathOf(string commandSocketPath) => commandSocketPath + ".ctrl";

    public static Task InitAsync(string controlSocketPath, CancellationToken cancellationToken) =>
        SendAsync(controlSocketPath, CmdInit, InitDeleteVolatile, cancellationToken);

    public static Task ShutdownAsync(string controlSocketPath, CancellationToken cancellationToken) =>
        SendAsync(controlSocketPath, CmdShutdown, null, cancellationToken);

    private static async Task SendAsync(string controlSocketPath, uint command, uint? argument, CancellationToken cancellationToken)
    {
        using var socket = await SwtpmSocketTransport.ConnectUnixAsync(controlSocketPath, cancellationToken).ConfigureAwait(false);
        try
        {
            var request = new byte[argument is null ? 4 : 8];
            BinaryPrimitives.WriteUInt32BigEndian(request, command);
            if (argument is { } a)
            {
                BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(4), a);
            }
            await socket.SendAsync(request, cancellationToken).ConfigureAwait(false);
            var response = new byte[4];
            var got = 0;
            while (got < 4)
            {
                var n = await socket.ReceiveAsync(response.AsMemory(got), cancellationToken).ConfigureAwait(false);
                if (n == 0)
                {
                    throw new TpmException($"swtpm control channel closed before answering command {command}");
                }
                got += n;
            }
            var result = BinaryPrimitives.ReadUInt32BigEndian(response);
            if (result != 0)
            {
                throw new TpmException($"swtpm control command {command} failed with result 0x{result:X}");
            }
        }
        catch (SocketException e)
        {
            throw new TpmException($"swtpm control channel at {controlSocketPath} failed: {e.SocketErrorCode}", e);
        }
    }
}
