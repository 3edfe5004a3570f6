using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Asterism.Attestation.Tests;

/// <summary>Keeps formatted log lines so tests can assert what was logged.</summary>
public sealed class CollectingLogger<T> : ILogger<T>
{
    public ConcurrentQueue<(LogLevel Level, string Message)> Lines { get; } = new();

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Lines.Enqueue((logLevel, Asterism.Logging.LogText.Format(state, exception, formatter)));
}
