using System.Reflection;
using System.Text.RegularExpressions;
using Asterism.Logging;
using Microsoft.Extensions.Logging;
using Contract = Asterism.Logging.LogContract;

namespace Asterism.LogContract.Tests;

/// <summary>
/// The log contract of every component (Asterism.Logging's README): messages only in the components' typed log
/// classes, event ids unique and inside each component's range, fixed texts with the caller, and every line of the
/// documented boot flow defined with its logger and level.
/// </summary>
public sealed partial class LogContractTests
{
    /// <summary>The executables' assembly names differ from their project names.</summary>
    private static readonly Dictionary<string, string> AssemblyNames = new(StringComparer.Ordinal)
    {
        ["Asterism.Node"] = "asterism-node",
        ["Asterism.Cli"] = "asterism",
        ["Asterism.Cloud.Host"] = "asterism-cloud",
    };

    private sealed record Message(string Component, Type Owner, MethodInfo Method, int Id, LogLevel Level, string Text)
    {
        public string? Category => Owner.GetField("Category", BindingFlags.Public | BindingFlags.Static)?.GetRawConstantValue() as string;

        public override string ToString() => $"{Owner.FullName}.{Method.Name} ({Id})";
    }

    private static IReadOnlyList<Message> Messages { get; } = Collect();

    private static List<Message> Collect()
    {
        var messages = new List<Message>();
        foreach (var component in Contract.EventIdRanges.Keys)
        {
            var assembly = Assembly.Load(AssemblyNames.GetValueOrDefault(component, component));
            foreach (var type in assembly.GetTypes())
            {
                foreach (var method in type.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.DeclaredOnly))
                {
                    if (method.GetCustomAttribute<LoggerMessageAttribute>() is { } a)
                    {
                        messages.Add(new Message(component, type, method, a.EventId, a.Level, a.Message));
                    }
                }
            }
        }
        return messages;
    }

    [Fact]
    public void Messages_Found_InEveryLoggingComponent()
    {
        foreach (var component in (string[])["Asterism.Node", "Asterism.JoinService", "Asterism.Atls", "Asterism.Attestation", "Asterism.Cloud", "Asterism.Cloud.Host"])
        {
            Assert.Contains(Messages, m => m.Component == component);
        }
    }

    [Fact]
    public void EventIds_UniqueAndInsideTheirComponentsRange()
    {
        var ids = Messages.Select(m => (m.Component, m.Id)).Append((Component: "Asterism.Logging", GrpcServerLog.CallFinished.Id)).ToList();
        var duplicates = ids.GroupBy(i => i.Id).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        Assert.True(duplicates.Count == 0, "duplicate event ids: " + string.Join(", ", duplicates));
        var outside = ids.Where(i => i.Id < Contract.EventIdRanges[i.Component].First || i.Id > Contract.EventIdRanges[i.Component].Last).ToList();
        Assert.True(outside.Count == 0, "event ids outside their component's range: " + string.Join(", ", outside));
    }

    [Fact]
    public void Ranges_DoNotOverlap()
    {
        var ranges = Contract.EventIdRanges.Values.OrderBy(r => r.First).ToList();
        for (var i = 1; i < ranges.Count; i++)
        {
            Assert.True(ranges[i - 1].Last < ranges[i].First, $"{ranges[i - 1]} overlaps {ranges[i]}");
        }
    }

    [Fact]
    public void Messages_FixedTextsWithCaller()
    {
        var bad = new List<string>();
        foreach (var m in Messages)
        {
            var parameters = m.Method.GetParameters();
            if (m.Text.Contains('{', StringComparison.Ordinal) || m.Text.EndsWith('.') || !char.IsUpper(m.Text[0]))
            {
                bad.Add($"{m}: \"{m.Text}\" must be a fixed text starting upper case without a trailing period");
            }
            if (parameters.Length < 2 || parameters[^2].Name != Contract.CallerFileKey || parameters[^1].Name != Contract.CallerLineKey)
            {
                bad.Add($"{m}: must end with [CallerFilePath] {Contract.CallerFileKey} and [CallerLineNumber] {Contract.CallerLineKey}");
            }
        }
        Assert.True(bad.Count == 0, string.Join("\n", bad));
    }

    [Fact]
    public void NodeReadme_EveryBootFlowLine_DefinedWithItsLoggerAndLevel()
    {
        var rows = BootFlowTable();
        Assert.True(rows.Count >= 10, "the node README's boot-flow table is missing or short");
        var missing = new List<string>();
        foreach (var (text, logger, level) in rows)
        {
            if (logger.EndsWith(GrpcServerLog.CategorySuffix, StringComparison.Ordinal))
            {
                // The finished-call line: its text and level follow the status code, its logger the component's.
                var component = logger[..^GrpcServerLog.CategorySuffix.Length];
                var ok = Regex.Match(text, "^finished (unary|streaming) call with code (\\w+)$");
                var code = Enum.GetValues<Grpc.Core.StatusCode>().FirstOrDefault(c => GrpcServerLog.CodeName(c) == ok.Groups[2].Value, (Grpc.Core.StatusCode)(-1));
                if (!ok.Success || (int)code < 0 || JsonLogFormatter.LevelName(GrpcServerLog.LevelOf(code)) != level
                    || !Messages.Any(m => m.Category == component))
                {
                    missing.Add($"{text} ({logger}, {level})");
                }
                continue;
            }
            var category = logger == "(root)" ? "" : logger;
            if (!Messages.Any(m => m.Text == text && m.Category == category && JsonLogFormatter.LevelName(m.Level) == level))
            {
                missing.Add($"{text} ({logger}, {level})");
            }
        }
        Assert.True(missing.Count == 0, "documented boot-flow lines without a log method of that logger and level:\n" + string.Join("\n", missing));
    }

    [Fact]
    public void Docs_GreppedMessages_AreBootFlowLines()
    {
        // The recovery runbook and the root README tell operators to grep a node's console for these.
        var documented = BootFlowTable().Select(r => r.Text).ToHashSet();
        foreach (var text in (string[])["Waiting for decryption key", "Failed to rejoin on all endpoints"])
        {
            Assert.Contains(text, File.ReadAllText(Path.Combine(Root, "docs", "recovery.md")));
            Assert.Contains(text, documented);
        }
    }

    [Fact]
    public void Sources_NoLogCallOutsideTheLogClasses()
    {
        var adHoc = AdHocLogCall();
        var offenders = new List<string>();
        foreach (var file in Directory.EnumerateFiles(Path.Combine(Root, "src"), "*.cs", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(Root, file).Replace('\\', '/');
            if (relative.Contains("/obj/", StringComparison.Ordinal) || relative.Contains("/bin/", StringComparison.Ordinal)
                || relative == "src/Asterism.Logging/LoggerExtensions.cs")
            {
                continue;
            }
            var lines = File.ReadAllLines(file);
            for (var i = 0; i < lines.Length; i++)
            {
                if (adHoc.IsMatch(lines[i]))
                {
                    offenders.Add($"{relative}:{i + 1}: {lines[i].Trim()}");
                }
            }
        }
        Assert.True(offenders.Count == 0, "log calls with a message literal outside the components' log classes:\n" + string.Join("\n", offenders));
    }

    [Theory]
    [InlineData("        _log.Info(\"Starting RejoinClient\");")]
    [InlineData("            logger.LogError(\"Provider failed to start: {Error}\", e.Message);")]
    [InlineData("    log.Warn( \"x\", [Field.Of(\"a\", 1)]);")]
    [InlineData("    logger.Log(LogLevel.Information, \"x\");")]
    public void AdHocLogCall_Literal_Detected(string line) => Assert.Matches(AdHocLogCall(), line);

    private static List<(string Text, string Logger, string Level)> BootFlowTable()
    {
        var lines = File.ReadAllLines(Path.Combine(Root, "src", "Asterism.Node", "README.md"));
        var start = Array.FindIndex(lines, l => l.StartsWith("### Boot-flow log lines", StringComparison.Ordinal));
        var rows = new List<(string, string, string)>();
        if (start < 0)
        {
            return rows;
        }
        foreach (var line in lines.Skip(start + 1).SkipWhile(l => !l.StartsWith('|')).TakeWhile(l => l.StartsWith('|')))
        {
            var cells = line.Trim('|').Split('|').Select(c => c.Trim().Trim('`')).ToArray();
            if (cells.Length >= 3 && cells[0] != "message" && !cells[0].StartsWith("---", StringComparison.Ordinal))
            {
                rows.Add((cells[0], cells[1], cells[2]));
            }
        }
        return rows;
    }

    private static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Asterism.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException("repository root (Asterism.slnx) not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex("""\.(Info|Warn|Error|Debug|Log(Trace|Debug|Information|Warning|Error|Critical)?)\(\s*(LogLevel\.\w+\s*,\s*)?"[^"]*"\s*[,)]""")]
    private static partial Regex AdHocLogCall();
}
