using System.Text;
using System.Text.Json;

namespace Asterism.EndToEnd.Tests.Infrastructure;

/// <summary>One JSON log line of a node's serial console (ARCHITECTURE.md §9 envelope).</summary>
public sealed record LogEntry(string Level, string? Logger, string Msg, JsonElement Json, string Raw)
{
    public string? Field(string name) =>
        Json.TryGetProperty(name, out var value) ? (value.ValueKind == JsonValueKind.String ? value.GetString() : value.GetRawText()) : null;

    public bool Is(string level, string? logger, string msg) => Level == level && Logger == logger && Msg == msg;

    public override string ToString() => Raw;
}

/// <summary>
/// A node's serial console (console.log): the provider's "===== asterism-cloud: boot N of NAME" markers split it into
/// boots; every other line must be one JSON object with level, ts, msg (and logger unless at the root).
/// </summary>
public sealed class NodeLog
{
    private const string BootMarker = "===== asterism-cloud: boot ";

    private NodeLog(string path, string text)
    {
        Path = path;
        Text = text;
        var boots = new List<List<string>>();
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith(BootMarker, StringComparison.Ordinal))
            {
                boots.Add([]);
            }
            else if (line.Length > 0)
            {
                if (boots.Count == 0)
                {
                    boots.Add([]);
                }
                boots[^1].Add(line);
            }
        }
        Boots = boots;
    }

    public string Path { get; }

    /// <summary>The whole console, every boot.</summary>
    public string Text { get; }

    /// <summary>Raw lines per boot (boot 1 first), provider markers removed.</summary>
    public IReadOnlyList<IReadOnlyList<string>> Boots { get; }

    public static NodeLog Read(string path)
    {
        if (!File.Exists(path))
        {
            return new NodeLog(path, "");
        }
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return new NodeLog(path, reader.ReadToEnd());
    }

    /// <summary>JSON entries of boot <paramref name="boot"/> (1-based; 0 = the last boot).</summary>
    public IReadOnlyList<LogEntry> Entries(int boot = 0)
    {
        if (Boots.Count == 0)
        {
            return [];
        }
        var lines = boot == 0 ? Boots[^1] : Boots[boot - 1];
        return [.. lines.Select(Parse).OfType<LogEntry>()];
    }

    /// <summary>Every entry of every boot.</summary>
    public IEnumerable<LogEntry> AllEntries() => Boots.SelectMany(b => b).Select(Parse).OfType<LogEntry>();

    /// <summary>Lines of the console that are not provider markers and not a JSON object with the envelope keys.</summary>
    public IEnumerable<string> MalformedLines() =>
        Boots.SelectMany(b => b).Where(l => !l.StartsWith("===== asterism-cloud:", StringComparison.Ordinal) && Parse(l) is null);

    public bool Has(string level, string? logger, string msg, int boot = 0) => Entries(boot).Any(e => e.Is(level, logger, msg));

    /// <summary>The last lines of the current boot, for failure messages.</summary>
    public string Tail(int lines = 15) =>
        Boots.Count == 0 ? "(empty console)" : string.Join('\n', Boots[^1].TakeLast(lines));

    private static LogEntry? Parse(string line)
    {
        if (!line.StartsWith('{'))
        {
            return null;
        }
        try
        {
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement.Clone();
            if (root.ValueKind != JsonValueKind.Object
                || !root.TryGetProperty("level", out var level) || level.ValueKind != JsonValueKind.String
                || !root.TryGetProperty("ts", out var ts) || ts.ValueKind != JsonValueKind.String
                || !root.TryGetProperty("msg", out var msg) || msg.ValueKind != JsonValueKind.String)
            {
                return null;
            }
            var logger = root.TryGetProperty("logger", out var l) && l.ValueKind == JsonValueKind.String ? l.GetString() : null;
            return new LogEntry(level.GetString()!, logger, msg.GetString()!, root, line);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
