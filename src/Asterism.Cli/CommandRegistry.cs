using System.CommandLine;
using Asterism.Cli.Commands;

namespace Asterism.Cli;

/// <summary>Every command below the root, in help order.</summary>
public static class CommandRegistry
{
    public static IEnumerable<Command> Create(GlobalOptions global)
    {
        yield return DemoCommand.Create(global);
        yield return CreateCommand.Create(global);
        yield return InitCommand.Create(global);
        yield return StatusCommand.Create(global);
        yield return NodeCommand.Create(global);
        yield return AuditCommand.Create(global);
        yield return RecoverCommand.Create(global);
        yield return SecretCommand.Create(global);
        yield return PowerCommand.Create(global);
        yield return LogsCommand.Create(global);
        yield return ProviderCommand.Create(global);
        yield return TerminateCommand.Create(global);
        yield return FetchMeasurementsCommand.Create(global);
        yield return DiskCommand.Create(global);
        yield return TpmCommand.Create(global);
    }
}
