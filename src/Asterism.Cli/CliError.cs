namespace Asterism.Cli;

/// <summary>An operator-facing failure: printed as "Error: message" with the given exit code, never a stack trace.</summary>
public sealed class CliError(string message, int exitCode = 1) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}
