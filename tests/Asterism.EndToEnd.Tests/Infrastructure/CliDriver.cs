using System.Collections.Concurrent;
using System.Diagnostics;
using Asterism.Cli;

namespace Asterism.EndToEnd.Tests.Infrastructure;

/// <summary>One in-process run of the CLI.</summary>
public sealed record CliResult(IReadOnlyList<string> Args, int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
{
    /// <summary>Non-empty stdout lines, in order.</summary>
    public IReadOnlyList<string> StdoutLines => Lines(Stdout);

    public IReadOnlyList<string> StderrLines => Lines(Stderr);

    public override string ToString() =>
        $"asterism {string.Join(' ', Args)} -> exit {ExitCode} after {Elapsed.TotalSeconds:0.0} s\n--- stdout\n{Stdout}--- stderr\n{Stderr}---";

    private static string[] Lines(string text) =>
        [.. text.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Length > 0)];
}

/// <summary>
/// Runs <c>asterism</c> in-process (<see cref="Program.RunAsync"/>) against one workspace and keeps a transcript of
/// every run, so tests can scan the CLI's own output for key bytes.
/// </summary>
public sealed class CliDriver(string workspace)
{
    /// <summary>No single command of these tests may take longer (init waits up to 120 s for every node).</summary>
    public static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(4);

    private readonly ConcurrentQueue<CliResult> _transcript = new();

    public string Workspace { get; } = workspace;

    public IReadOnlyCollection<CliResult> Transcript => _transcript;

    /// <summary>Runs a command in this workspace (<c>-C WORKSPACE</c> appended).</summary>
    public async Task<CliResult> RunAsync(params string[] args)
    {
        var result = await RunRawAsync([.. args, "-C", Workspace]);
        _transcript.Enqueue(result);
        return result;
    }

    /// <summary>Runs a command exactly as given, and fails the test unless it exits 0.</summary>
    public async Task<CliResult> RunOkAsync(params string[] args)
    {
        var result = await RunAsync(args);
        Assert.True(result.ExitCode == 0, result.ToString());
        return result;
    }

    /// <summary>Runs the CLI with exactly these arguments (no workspace added).</summary>
    public static async Task<CliResult> RunRawAsync(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        using var timeout = new CancellationTokenSource(CommandTimeout);
        var watch = Stopwatch.StartNew();
        var code = await Program.RunAsync(args, TextWriter.Synchronized(stdout), TextWriter.Synchronized(stderr), timeout.Token);
        return new CliResult(args, code, stdout.ToString(), stderr.ToString(), watch.Elapsed);
    }
}
