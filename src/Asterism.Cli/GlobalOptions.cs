using System.CommandLine;

namespace Asterism.Cli;

/// <summary>Options every command understands.</summary>
public sealed class GlobalOptions
{
    public Option<string?> Workspace { get; } = new("--workspace", "-C")
    {
        Description = "Workspace directory (default: the current directory; a relative path is relative to the current directory)",
        Recursive = true,
    };

    public Option<bool> Debug { get; } = new("--debug")
    {
        Description = "Print debug output",
        Recursive = true,
    };

    /// <summary>The workspace directory the command acts on, absolute; a file there is an operator error, not "missing".</summary>
    public string WorkspaceOf(ParseResult result)
    {
        var path = WorkspacePathOf(result);
        if (File.Exists(path))
        {
            throw new CliError($"workspace {path} is a file, not a directory; pass -C DIR with the workspace directory");
        }
        return path;
    }

    /// <summary>The absolute workspace path, unchecked: for looking whether a file is there.</summary>
    public string WorkspacePathOf(ParseResult result) =>
        Path.GetFullPath(result.GetValue(Workspace) ?? Directory.GetCurrentDirectory());
}
