using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;

namespace Asterism.Logging;

/// <summary>
/// Log calls that carry the caller's source position and fields: <c>log.Info("Requesting rejoin ticket",
/// [Field.Of("endpoint", endpoint)])</c>. Messages start upper case, have no trailing period, and hold no values.
/// </summary>
public static class LoggerExtensions
{
    public static void Debug(this ILogger logger, string message, IReadOnlyList<KeyValuePair<string, object?>>? fields = null,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0) =>
        Write(logger, LogLevel.Debug, message, fields, null, file, line);

    public static void Info(this ILogger logger, string message, IReadOnlyList<KeyValuePair<string, object?>>? fields = null,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0) =>
        Write(logger, LogLevel.Information, message, fields, null, file, line);

    public static void Warn(this ILogger logger, string message, IReadOnlyList<KeyValuePair<string, object?>>? fields = null,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0) =>
        Write(logger, LogLevel.Warning, message, fields, null, file, line);

    public static void Error(this ILogger logger, string message, IReadOnlyList<KeyValuePair<string, object?>>? fields = null,
        [CallerFilePath] string file = "", [CallerLineNumber] int line = 0) =>
        Write(logger, LogLevel.Error, message, fields, null, file, line);

    private static void Write(ILogger logger, LogLevel level, string message, IReadOnlyList<KeyValuePair<string, object?>>? fields,
        Exception? exception, string file, int line)
    {
        if (!logger.IsEnabled(level))
        {
            return;
        }
        var record = new LogRecord(message, fields ?? [], LogRecord.ShortCaller(file, line));
        logger.Log(level, default, record, exception, LogRecord.Format);
    }
}

/// <summary>Builds log fields.</summary>
public static class Field
{
    public static KeyValuePair<string, object?> Of(string name, object? value) => new(name, value);
}
