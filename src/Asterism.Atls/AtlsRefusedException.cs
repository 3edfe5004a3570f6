using System.Security.Authentication;
using Asterism.Attestation;
using Grpc.Core;

namespace Asterism.Atls;

/// <summary>
/// Thrown by the aTLS client handlers when the peer's attestation is refused (or the handshake timed out).
/// HttpClient wraps it in an HttpRequestException; Grpc.Net.Client turns that into an RpcException (StatusCode.Internal,
/// "Error starting gRPC call") whose DebugException chain holds this exception: use <see cref="FindIn"/>.
/// The message names the reason, never a secret.
/// </summary>
public sealed class AtlsRefusedException(AttestationFailure failure, string message) : AuthenticationException(message)
{
    public AttestationFailure Failure { get; } = failure;

    /// <summary>The refusal behind <paramref name="exception"/> (inner exceptions and RpcException debug exceptions), or null.</summary>
    public static AtlsRefusedException? FindIn(Exception? exception)
    {
        for (var depth = 0; exception is not null && depth < 16; depth++)
        {
            if (exception is AtlsRefusedException refused)
            {
                return refused;
            }
            exception = exception.InnerException ?? (exception as RpcException)?.Status.DebugException;
        }
        return null;
    }
}
