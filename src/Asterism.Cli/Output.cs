namespace Asterism.Cli;

/// <summary>Progress for people: written to stderr, only when it is a terminal, so stdout stays exact for scripts.</summary>
public sealed class Progress(TextWriter stderr, bool enabled)
{
    public bool Enabled { get; } = enabled;

    public static Progress For(TextWriter stderr) =>
        new(stderr, ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected);

    public void Report(string message)
    {
        if (Enabled)
        {
            stderr.WriteLine(message);
        }
    }
}
