using System.CommandLine;
using System.Reflection;

namespace Asterism.Cli.Commands;

public static class VersionCommand
{
    public static string Version =>
        typeof(VersionCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion?.Split('+')[0]
        ?? "0.0.0";

    public static Command Create()
    {
        var command = new Command("version", "Print the version of the Asterism CLI");
        command.SetAction(result =>
        {
            result.InvocationConfiguration.Output.WriteLine($"asterism {Version}");
            result.InvocationConfiguration.Output.WriteLine($"runtime: .NET {Environment.Version}");
            return 0;
        });
        return command;
    }
}
