using System.CommandLine;

namespace Asterism.Cli;

/// <summary>Options every command understands.</summary>
public sealed class GlobalOptions
{
    public Option<string?> Workspace { get; } = new("--workspace", "-C")
    {
        Description = "Workspace directory (default: the current directory)",
        Recursive = true,
    };

    public Option<bool> Debug { get; } = new("--debug")
    {
        Description = "Print debug output",
        Recursive = true,
    };

    /// <summary>The workspace directory the command acts on, absolute.</summary>
    public string WorkspaceOf(ParseResult result) =>
        Path.GetFullPath(result.GetValue(Workspace) ?? Directory.GetCurrentDirectory());
}
