using System.CommandLine;

namespace Asterism.Cli;

/// <summary>
/// The lines a usage error prints (exit 2). A mistyped command comes first as a suggestion ("unknown command 'recovr';
/// did you mean 'recover'?") instead of System.CommandLine's "Required command was not provided", and a mistyped
/// option names the nearest option; other parse errors are printed as System.CommandLine words them.
/// </summary>
public static class UsageErrors
{
    public static IReadOnlyList<string> Describe(ParseResult result)
    {
        var command = result.CommandResult.Command;
        var unmatched = result.UnmatchedTokens;
        var lines = new List<string>();
        var needsSubcommand = command.Subcommands.Count > 0 && command.Action is null;
        var commands = command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name).ToList();
        if (needsSubcommand && unmatched.FirstOrDefault(t => !t.StartsWith('-')) is { } typed)
        {
            // What follows a mistyped command belongs to it; one line about the command says everything.
            lines.Add(Nearest(typed, commands) is { } near
                ? $"unknown command '{typed}'; did you mean '{near}'?"
                : $"unknown command '{typed}'; commands: {string.Join(", ", commands)}");
            return lines;
        }
        var options = OptionNames(command).ToList();
        var suggested = new List<string>();
        foreach (var token in unmatched.Where(t => t.StartsWith("--", StringComparison.Ordinal)))
        {
            if (Nearest(token.Split('=')[0], options) is { } near)
            {
                lines.Add($"unknown option '{token.Split('=')[0]}'; did you mean '{near}'?");
                suggested.Add($"'{token}'");
            }
        }
        var missingCommand = needsSubcommand ? MissingCommandMessage(command) : null;
        lines.AddRange(result.Errors
            .Select(e => e.Message)
            .Where(m => m != missingCommand && !suggested.Any(t => m.Contains(t, StringComparison.Ordinal))));
        if (missingCommand is not null)
        {
            lines.Add($"a command is missing; commands: {string.Join(", ", commands)}");
        }
        return lines;
    }

    /// <summary>The closest name within a few edits (or the only one the token starts), or null when none is close.</summary>
    public static string? Nearest(string typed, IEnumerable<string> names)
    {
        var candidates = names.ToList();
        var prefixed = candidates.Where(n => typed.Length >= 3 && n.StartsWith(typed, StringComparison.Ordinal)).ToList();
        if (prefixed.Count == 1)
        {
            return prefixed[0];
        }
        var best = candidates
            .Select(n => (Name: n, Distance: Distance(typed, n)))
            .Where(c => c.Distance <= Math.Max(1, Math.Min(3, c.Name.Length / 3)))
            .OrderBy(c => c.Distance)
            .FirstOrDefault();
        return best.Name;
    }

    private static IEnumerable<string> OptionNames(Command command)
    {
        var options = command.Options.AsEnumerable();
        for (var parent = command.Parents.OfType<Command>().FirstOrDefault(); parent is not null; parent = parent.Parents.OfType<Command>().FirstOrDefault())
        {
            options = options.Concat(parent.Options.Where(o => o.Recursive));
        }
        return options.Where(o => !o.Hidden).SelectMany(o => o.Aliases.Prepend(o.Name)).Where(n => n.StartsWith("--", StringComparison.Ordinal)).Distinct();
    }

    /// <summary>System.CommandLine's text for a command group called without a command, as its current resources word it.</summary>
    private static string? MissingCommandMessage(Command command)
    {
        var probe = new Command(command.Name) { new Command("x") };
        return probe.Parse([]).Errors.FirstOrDefault()?.Message;
    }

    /// <summary>Levenshtein distance (names are short).</summary>
    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }
        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
                current[j] = Math.Min(substitution, Math.Min(previous[j] + 1, current[j - 1] + 1));
            }
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
