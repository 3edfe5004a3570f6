using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Asterism.Logging;

/// <summary>
/// Writes one JSON object per line in the envelope of Constellation's serial-console excerpts:
/// <c>{"level":"INFO","ts":"…Z","logger":"rejoinClient","caller":"RejoinClient/RejoinClient.cs:96","msg":"…",…fields}</c>.
/// <c>logger</c> is omitted at the root (empty category). Byte arrays and spans never appear: they render as
/// "[redacted]", as does any value whose <c>ToString()</c> is "[redacted]" (key material types).
/// </summary>
public static class JsonLogFormatter
{
    public const string Redacted = "[redacted]";

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Indented = false,
    };

    public static string LevelName(LogLevel level) => level switch
    {
        LogLevel.Trace or LogLevel.Debug => "DEBUG",
        LogLevel.Information => "INFO",
        LogLevel.Warning => "WARN",
        _ => "ERROR",
    };

    /// <summary>Formats one record; <paramref name="state"/> may be a <see cref="LogRecord"/> or any structured state.</summary>
    public static string Format<TState>(string category, LogLevel level, DateTimeOffset timestamp, TState state,
        Exception? exception, Func<TState, Exception?, string> formatter)
    {
        var buffer = new ArrayBufferWriterStream();
        using (var json = new Utf8JsonWriter(buffer, WriterOptions))
        {
            json.WriteStartObject();
            json.WriteString("level", LevelName(level));
            json.WriteString("ts", timestamp.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
            if (!string.IsNullOrEmpty(category))
            {
                json.WriteString("logger", category);
            }
            IEnumerable<KeyValuePair<string, object?>> fields;
            if (state is LogRecord record)
            {
                if (record.Caller.Length > 0)
                {
                    json.WriteString("caller", record.Caller);
                }
                json.WriteString("msg", record.Message);
                fields = record.Fields;
            }
            else
            {
                fields = state as IEnumerable<KeyValuePair<string, object?>> ?? [];
                // A [LoggerMessage] method of a component's log class carries its call site in two caller-info
                // parameters; they become the envelope's caller, not fields.
                var caller = CallerOf(fields);
                if (caller.Length > 0)
                {
                    json.WriteString("caller", caller);
                }
                json.WriteString("msg", formatter(state, exception));
            }
            var seen = new HashSet<string>(StringComparer.Ordinal) { "level", "ts", "logger", "caller", "msg", LogContract.CallerFileKey, LogContract.CallerLineKey };
            foreach (var (name, value) in fields)
            {
                if (name == "{OriginalFormat}" || !seen.Add(name))
                {
                    continue;
                }
                json.WritePropertyName(name);
                WriteValue(json, value, depth: 0);
            }
            if (exception is not null && seen.Add("error"))
            {
                // Only the exception's type and message: stack traces and inner data stay out of the console.
                json.WriteString("error", exception.GetType().Name + ": " + exception.Message);
            }
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>"folder/File.cs:line" from the caller-info fields of generated log state, or "" when there are none.</summary>
    internal static string CallerOf(IEnumerable<KeyValuePair<string, object?>> fields)
    {
        string? file = null;
        int? line = null;
        foreach (var (name, value) in fields)
        {
            if (name == LogContract.CallerFileKey && value is string f)
            {
                file = f;
            }
            else if (name == LogContract.CallerLineKey && value is int l)
            {
                line = l;
            }
        }
        return file is null || line is null ? "" : LogRecord.ShortCaller(file, line.Value);
    }

    private static void WriteValue(Utf8JsonWriter json, object? value, int depth)
    {
        switch (value)
        {
            case null:
                json.WriteNullValue();
                return;
            case string s:
                json.WriteStringValue(s);
                return;
            case bool b:
                json.WriteBooleanValue(b);
                return;
            case int or long or short or uint or ushort or byte or sbyte:
                json.WriteNumberValue(Convert.ToInt64(value, CultureInfo.InvariantCulture));
                return;
            case ulong ul:
                json.WriteNumberValue(ul);
                return;
            case double or float or decimal:
                json.WriteNumberValue(Convert.ToDouble(value, CultureInfo.InvariantCulture));
                return;
            case byte[] or ReadOnlyMemory<byte> or Memory<byte> or ArraySegment<byte>:
                json.WriteStringValue(Redacted);
                return;
            case DateTimeOffset dto:
                json.WriteStringValue(dto.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
                return;
            case DateTime dt:
                json.WriteStringValue(dt.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
                return;
            case TimeSpan ts:
                json.WriteStringValue(ts.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture) + "s");
                return;
            case Exception ex:
                json.WriteStringValue(ex.Message);
                return;
            case IEnumerable sequence when depth < 2:
                json.WriteStartArray();
                foreach (var item in sequence)
                {
                    WriteValue(json, item, depth + 1);
                }
                json.WriteEndArray();
                return;
            default:
                json.WriteStringValue(Convert.ToString(value, CultureInfo.InvariantCulture) ?? "");
                return;
        }
    }

    /// <summary>A field value as plain text, with the same redaction as the JSON output.</summary>
    public static string Render(object? value) => value switch
    {
        null => "null",
        string s => s,
        byte[] or ReadOnlyMemory<byte> or Memory<byte> or ArraySegment<byte> => Redacted,
        IEnumerable sequence and not string => "[" + string.Join(",", sequence.Cast<object?>().Select(Render)) + "]",
        _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "",
    };

    private sealed class ArrayBufferWriterStream : System.Buffers.IBufferWriter<byte>
    {
        private readonly System.Buffers.ArrayBufferWriter<byte> _inner = new(256);

        public ReadOnlySpan<byte> WrittenSpan => _inner.WrittenSpan;

        public void Advance(int count) => _inner.Advance(count);

        public Memory<byte> GetMemory(int sizeHint = 0) => _inner.GetMemory(sizeHint);

        public Span<byte> GetSpan(int sizeHint = 0) => _inner.GetSpan(sizeHint);
    }
}
