namespace Asterism.Logging;

/// <summary>
/// The state of one log call made through <see cref="LoggerExtensions"/>: a fixed message, the caller's source
/// position, and structured fields. The message is never a template, so field values cannot leak into it.
/// </summary>
public sealed class LogRecord(string message, IReadOnlyList<KeyValuePair<string, object?>> fields, string caller)
    : IReadOnlyList<KeyValuePair<string, object?>>
{
    public string Message { get; } = message;

    /// <summary>Short "folder/File.cs:line" of the call site.</summary>
    public string Caller { get; } = caller;

    public IReadOnlyList<KeyValuePair<string, object?>> Fields { get; } = fields;

    public int Count => Fields.Count;

    public KeyValuePair<string, object?> this[int index] => Fields[index];

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator() => Fields.GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => Message;

    /// <summary>
    /// Formatter passed to <c>ILogger.Log</c>, for sinks other than the JSON one: the fixed message, then the fields
    /// as <c>name=value</c> (key material redacted exactly as in JSON).
    /// </summary>
    public static string Format(LogRecord record, Exception? exception)
    {
        if (record.Fields.Count == 0)
        {
            return record.Message;
        }
        var text = new System.Text.StringBuilder(record.Message);
        foreach (var (name, value) in record.Fields)
        {
            text.Append(' ').Append(name).Append('=').Append(JsonLogFormatter.Render(value));
        }
        return text.ToString();
    }

    /// <summary>"folder/File.cs:line" from a full path.</summary>
    public static string ShortCaller(string filePath, int line)
    {
        if (string.IsNullOrEmpty(filePath))
        {
            return "";
        }
        var normalized = filePath.Replace('\\', '/');
        var file = normalized.LastIndexOf('/');
        var folder = file > 0 ? normalized.LastIndexOf('/', file - 1) : -1;
        return normalized[(folder + 1)..] + ":" + line.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }
}
