using System.Diagnostics;

namespace Asterism.TpmEndToEnd.Tests;

/// <summary>The result of one CLI run.</summary>
public sealed record CliRun(int ExitCode, string Stdout, string Stderr)
{
    public string Output => Stdout + Stderr;

    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
}

/// <summary>
/// Runs `asterism` as a process from its own copy of the build (so the node binary the local provider measures
/// can be swapped for a tampered one without touching the build output), against one workspace.
/// </summary>
public sealed class CliProcess(string binDir, string workspace)
{
    public string BinDir { get; } = binDir;

    public string NodeDll => Path.Combine(BinDir, "asterism-node.dll");

    public async Task<CliRun> RunAsync(params string[] args)
    {
        var psi = new ProcessStartInfo(DotnetHost)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        psi.ArgumentList.Add(Path.Combine(BinDir, "asterism.dll"));
        psi.ArgumentList.Add("-C");
        psi.ArgumentList.Add(workspace);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var process = Process.Start(psi)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(180));
        await process.WaitForExitAsync(timeout.Token);
        return new CliRun(process.ExitCode, await stdout, await stderr);
    }

    public async Task<CliRun> RunOkAsync(params string[] args)
    {
        var run = await RunAsync(args);
        Assert.True(run.ExitCode == 0, $"asterism {string.Join(' ', args)}: {run}{NodeConsoleTails()}");
        return run;
    }

    /// <summary>The last lines of every node's console, so a failed step shows what the nodes were doing.</summary>
    public string NodeConsoleTails(int lines = 25)
    {
        var instances = Path.Combine(workspace, ".asterism", "cloud", "instances");
        if (!Directory.Exists(instances))
        {
            return "";
        }
        var text = new System.Text.StringBuilder();
        foreach (var console in Directory.GetFiles(instances, "console.log", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            var all = File.ReadAllLines(console);
            text.Append("\n--- ").Append(Path.GetFileName(Path.GetDirectoryName(console))).Append(" console (last ").Append(lines).Append(" lines)\n");
            text.AppendJoin('\n', all.Skip(Math.Max(0, all.Length - lines)));
        }
        return text.ToString();
    }

    public static string DotnetHost =>
        Environment.ProcessPath is { } p && Path.GetFileName(p) == "dotnet" ? p : "dotnet";
}
