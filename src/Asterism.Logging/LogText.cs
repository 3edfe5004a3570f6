using System.Text;

namespace Asterism.Logging;

/// <summary>
/// One plain-text line for sinks other than the JSON one (test collectors, plain consoles): the message, then every
/// field the message does not already show as <c>name=value</c>, redacted exactly as in JSON. A generated
/// <c>[LoggerMessage]</c> formatter alone would print only the fixed text and drop the fields.
/// </summary>
public static class LogText
{
    public static string Format<TState>(TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (state is LogRecord record)
        {
            return LogRecord.Format(record, exception);
        }
        var message = formatter(state, exception);
        if (state is not IEnumerable<KeyValuePair<string, object?>> fields)
        {
            return message;
        }
        var template = "";
        foreach (var (name, value) in fields)
        {
            if (name == "{OriginalFormat}")
            {
                template = value as string ?? "";
            }
        }
        var text = new StringBuilder(message);
        foreach (var (name, value) in fields)
        {
            if (name is "{OriginalFormat}" or LogContract.CallerFileKey or LogContract.CallerLineKey
                || template.Contains("{" + name, StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }
            text.Append(' ').Append(name).Append('=').Append(JsonLogFormatter.Render(value));
        }
        return text.ToString();
    }
}
