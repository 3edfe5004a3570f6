using System.CommandLine;

namespace Asterism.Cli;

/// <summary>Every command below the root, in help order.</summary>
public static class CommandRegistry
{
    public static IEnumerable<Command> Create(GlobalOptions global)
    {
        _ = global;
        yield break;
    }
}
