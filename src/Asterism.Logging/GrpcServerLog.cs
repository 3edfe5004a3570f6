using System.Globalization;
using System.Runtime.CompilerServices;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace Asterism.Logging;

/// <summary>
/// The line every node gRPC server writes when a call finishes, with the field names of go-grpc-middleware's server
/// logging (as a Constellation node's serial console shows them), under the logger <c>&lt;component&gt;.gRPC</c>:
/// <c>{"level":"INFO",…,"logger":"recoveryServer.gRPC",…,"msg":"finished streaming call with code OK",
/// "grpc.start_time":…,"system":"grpc","span.kind":"server","grpc.service":"recoverproto.API","grpc.method":"Recover",
/// "peer.address":…,"grpc.code":"OK","grpc.time_ms":…}</c>. Not a <c>[LoggerMessage]</c>: the level and the text
/// follow the status code, and the field names hold dots. Request and response bodies are never logged.
/// </summary>
public static class GrpcServerLog
{
    /// <summary>Event id of the finished-call line (Asterism.Logging's range).</summary>
    public static readonly EventId CallFinished = new(100, nameof(CallFinished));

    /// <summary>The suffix of the call logger's category after the component's logger name.</summary>
    public const string CategorySuffix = ".gRPC";

    /// <summary>The field names of the line, in the order they are written.</summary>
    public static IReadOnlyList<string> FieldNames { get; } =
        ["grpc.start_time", "system", "span.kind", "grpc.service", "grpc.method", "peer.address", "grpc.code", "grpc.time_ms"];

    /// <summary>The call logger of a component: <c>recoveryServer</c> logs its calls as <c>recoveryServer.gRPC</c>.</summary>
    public static ILogger CreateLogger(ILoggerFactory loggers, string component) => loggers.CreateLogger(component + CategorySuffix);

    /// <summary>go-grpc-middleware's default server mapping from a status code to a level.</summary>
    public static LogLevel LevelOf(StatusCode code) => code switch
    {
        StatusCode.OK or StatusCode.Cancelled or StatusCode.InvalidArgument or StatusCode.NotFound
            or StatusCode.AlreadyExists or StatusCode.Unauthenticated => LogLevel.Information,
        StatusCode.DeadlineExceeded or StatusCode.PermissionDenied or StatusCode.ResourceExhausted
            or StatusCode.FailedPrecondition or StatusCode.Aborted or StatusCode.OutOfRange
            or StatusCode.Unavailable => LogLevel.Warning,
        _ => LogLevel.Error,
    };

    /// <summary>The code's name as gRPC spells it everywhere else (Go's <c>codes.Code.String()</c>): <c>Canceled</c>
    /// with one l, where the C# enum says <c>Cancelled</c>.</summary>
    public static string CodeName(StatusCode code) => code == StatusCode.Cancelled ? "Canceled" : code.ToString();

    /// <summary>Writes the finished-call line.</summary>
    /// <param name="method">The full method, <c>/package.Service/Method</c>.</param>
    /// <param name="peer">grpc-dotnet's peer, <c>ipv4:127.0.0.1:5000</c>; written without the scheme.</param>
    public static void Finished(ILogger logger, bool streaming, string method, string peer, StatusCode code,
        DateTimeOffset start, TimeSpan elapsed, [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0)
    {
        var level = LevelOf(code);
        if (!logger.IsEnabled(level))
        {
            return;
        }
        var (service, name) = SplitMethod(method);
        var message = (streaming ? "finished streaming call with code " : "finished unary call with code ") + CodeName(code);
        var fields = new KeyValuePair<string, object?>[]
        {
            new("grpc.start_time", start.ToString("yyyy-MM-dd'T'HH:mm:ss.fffzzz", CultureInfo.InvariantCulture)),
            new("system", "grpc"),
            new("span.kind", "server"),
            new("grpc.service", service),
            new("grpc.method", name),
            new("peer.address", PeerAddress(peer)),
            new("grpc.code", CodeName(code)),
            new("grpc.time_ms", Math.Round(elapsed.TotalMilliseconds, 3)),
        };
        logger.Log(level, CallFinished, new LogRecord(message, fields, LogRecord.ShortCaller(callerFile, callerLine)), null, LogRecord.Format);
    }

    private static (string Service, string Method) SplitMethod(string method)
    {
        var trimmed = method.TrimStart('/');
        var slash = trimmed.LastIndexOf('/');
        return slash < 0 ? ("", trimmed) : (trimmed[..slash], trimmed[(slash + 1)..]);
    }

    private static string PeerAddress(string peer)
    {
        foreach (var scheme in (ReadOnlySpan<string>)["ipv4:", "ipv6:", "unix:"])
        {
            if (peer.StartsWith(scheme, StringComparison.Ordinal))
            {
                return peer[scheme.Length..];
            }
        }
        return peer;
    }
}
