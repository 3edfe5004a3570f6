namespace Asterism.Cli;

/// <summary>
/// Progress for people: shown only when the operator watches a terminal (stdout and stderr both a terminal), and
/// written to stderr, so stdout keeps exactly the documented lines for scripts.
/// </summary>
public sealed class Progress(TextWriter stderr, bool enabled)
{
    public bool Enabled { get; } = enabled;

    public static Progress For(TextWriter stderr) =>
        new(stderr, ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected && !Console.IsOutputRedirected);

    public void Report(string message)
    {
        if (Enabled)
        {
            stderr.WriteLine(message);
        }
    }
}
