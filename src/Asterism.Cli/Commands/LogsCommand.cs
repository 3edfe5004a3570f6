using System.CommandLine;

namespace Asterism.Cli.Commands;

/// <summary><c>asterism logs NODE [--follow]</c>: a node's serial console.</summary>
public static class LogsCommand
{
    public static Command Create(GlobalOptions global)
    {
        var node = new Argument<string>("node") { Description = "Node name (see 'asterism status')" };
        var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing new output until interrupted" };
        var command = new Command("logs", "Print a node's serial console") { node, follow };
        command.SetAction(async (result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var workspace = new Workspace(global.WorkspaceOf(result));
            workspace.RequireCluster();
            var name = result.GetValue(node)!;
            var path = workspace.Cloud.ConsoleLogPath(name);
            // By name among the instance directories: "../x" or "a/b" never names a file outside them.
            workspace.RequireNodes([name]);
            if (!File.Exists(path))
            {
                return 0;
            }
            await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var reader = new StreamReader(stream);
            var buffer = new char[16384];
            while (true)
            {
                var n = await reader.ReadAsync(buffer, cancellationToken);
                if (n > 0)
                {
                    await stdout.WriteAsync(buffer.AsMemory(0, n), cancellationToken);
                    continue;
                }
                if (!result.GetValue(follow))
                {
                    return 0;
                }
                await stdout.FlushAsync(cancellationToken);
                try
                {
                    await Task.Delay(200, cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    return 0;
                }
            }
        });
        return command;
    }
}
