using System.CommandLine;
using Asterism.Cli.Commands;

namespace Asterism.Cli;

public static class Program
{
    public static Task<int> Main(string[] args)
    {
        // Workspace files, the master secret and the provider it starts: owner-only, whatever the caller's umask.
        Asterism.Cloud.OwnerOnly.RestrictProcessUmask();
        return RunAsync(args, Console.Out, Console.Error);
    }

    /// <summary>Builds the command tree.</summary>
    public static RootCommand BuildRoot(GlobalOptions global)
    {
        var root = new RootCommand(
            "Asterism keeps a confidential cluster's node disks encrypted and recovers the cluster after its control plane went down.");
        root.Options.Add(global.Workspace);
        root.Options.Add(global.Debug);
        root.Subcommands.Add(VersionCommand.Create());
        foreach (var command in CommandRegistry.Create(global))
        {
            root.Subcommands.Add(command);
        }
        return root;
    }

    /// <summary>
    /// Runs the CLI. Usage errors (unknown command, bad flag, a value an option's validator refuses) exit 2 with the
    /// problem and a hint, before any file is read; <see cref="CliError"/>
    /// exits with its code and message; anything else is a bug and exits 1 with its type and message only.
    /// </summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken = default)
    {
        var global = new GlobalOptions();
        var root = BuildRoot(global);
        var result = root.Parse(args);
        var configuration = new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false };
        if (result.CommandResult.Command is SignalHandlingCommand)
        {
            // Such a command (disk mount) must unmount before the process ends: System.CommandLine's own handler
            // would return 130 after its timeout while the unmount still runs, and the process would exit under it.
            configuration.ProcessTerminationTimeout = null;
        }
        if (result.Errors.Count > 0)
        {
            foreach (var line in UsageErrors.Describe(result))
            {
                await stderr.WriteLineAsync($"Error: {line}");
            }
            var commandName = string.Join(' ', result.CommandResult.Command.Parents.OfType<Command>().Reverse().Select(c => c.Name).Append(result.CommandResult.Command.Name).Skip(1));
            await stderr.WriteLineAsync($"Run 'asterism {(commandName.Length > 0 ? commandName + " " : "")}--help' for usage.");
            return 2;
        }
        await WarnIfTrustAnyKeyAsync(global.WorkspacePathOf(result), stderr);
        try
        {
            return await result.InvokeAsync(configuration, cancellationToken);
        }
        catch (CliError ex)
        {
            await stderr.WriteLineAsync($"Error: {ex.Message}");
            return ex.ExitCode;
        }
        catch (OperationCanceledException)
        {
            await stderr.WriteLineAsync("Error: cancelled");
            return 130;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // A failure nobody mapped to a CliError is a bug, but the operator still gets one line, not a stack trace
            // (texts of our exceptions never carry key material; --debug adds the trace for a bug report).
            await stderr.WriteLineAsync($"Error: unexpected {ex.GetType().Name}: {ex.Message}");
            if (result.GetValue(global.Debug))
            {
                await stderr.WriteLineAsync(ex.ToString());
            }
            return 1;
        }
    }

    /// <summary>
    /// trustAnyKey makes every attestation key trusted because it signed: allowed only for simulated test clusters, and
    /// then every command says so, whatever it does.
    /// </summary>
    private static async Task WarnIfTrustAnyKeyAsync(string workspace, TextWriter stderr)
    {
        var path = Path.Combine(workspace, Asterism.Config.ClusterConfig.FileName);
        if (!File.Exists(path))
        {
            return;
        }
        try
        {
            if (Asterism.Config.ClusterConfig.Load(path).Attestation.TrustAnyKey)
            {
                await stderr.WriteLineAsync($"Warning: INSECURE: {path} sets attestation.trustAnyKey: any local process can sign its own attestation and be trusted; remove it");
            }
        }
        catch (Asterism.Config.WorkspaceFileException)
        {
            // The command that needs the configuration reports what is wrong with it.
        }
    }
}
