using System.Net.Sockets;
using System.Security.Authentication;
using Grpc.Core;

namespace Asterism.Protocol;

/// <summary>Short, operator-readable descriptions of call failures ("connection refused", not a nested exception dump).</summary>
public static class RpcErrors
{
    public static string Describe(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException ?? (e as RpcException)?.Status.DebugException)
        {
            switch (e)
            {
                case AuthenticationException auth:
                    return "TLS handshake refused: " + auth.Message;
                case SocketException socket:
                    return socket.SocketErrorCode switch
                    {
                        SocketError.ConnectionRefused => "connection refused",
                        SocketError.ConnectionReset => "connection reset",
                        SocketError.TimedOut => "connection timed out",
                        _ => socket.Message,
                    };
                case IOException io when io.InnerException is null:
                    return io.Message;
            }
        }
        return exception switch
        {
            RpcException rpc when rpc.StatusCode == StatusCode.DeadlineExceeded => "timed out",
            RpcException rpc => $"{rpc.StatusCode}: {rpc.Status.Detail}",
            OperationCanceledException => "timed out",
            _ => exception.Message,
        };
    }
}
