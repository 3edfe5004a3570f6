using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Asterism.Logging;

/// <summary>
/// An <see cref="ILoggerProvider"/> writing <see cref="JsonLogFormatter"/> lines to a <see cref="TextWriter"/>
/// (a node's stdout, its serial console). Lines are written whole under a lock and flushed, so a crash loses at
/// most the line being written.
/// </summary>
public sealed class JsonLoggerProvider(TextWriter output, LogLevel minimumLevel = LogLevel.Information, TimeProvider? time = null)
    : ILoggerProvider
{
    private readonly ConcurrentDictionary<string, JsonLogger> _loggers = new(StringComparer.Ordinal);
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly Lock _lock = new();

    public LogLevel MinimumLevel { get; } = minimumLevel;

    public ILogger CreateLogger(string categoryName) => _loggers.GetOrAdd(categoryName, name => new JsonLogger(this, name));

    public void Dispose()
    {
        lock (_lock)
        {
            output.Flush();
        }
    }

    private void Write(string line)
    {
        lock (_lock)
        {
            output.WriteLine(line);
            output.Flush();
        }
    }

    private sealed class JsonLogger(JsonLoggerProvider provider, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None && logLevel >= provider.MinimumLevel;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }
            provider.Write(JsonLogFormatter.Format(category, logLevel, provider._time.GetUtcNow(), state, exception, formatter));
        }
    }
}

/// <summary>Wiring helpers.</summary>
public static class JsonLogging
{
    /// <summary>A logger factory whose only provider writes JSON lines to <paramref name="output"/>.</summary>
    public static ILoggerFactory CreateFactory(TextWriter output, bool debug = false, TimeProvider? time = null)
    {
        var minimum = debug ? LogLevel.Debug : LogLevel.Information;
        return LoggerFactory.Create(builder =>
        {
            builder.ClearProviders();
            builder.SetMinimumLevel(minimum);
            builder.AddProvider(new JsonLoggerProvider(output, minimum, time));
        });
    }

    /// <summary>Replaces the builder's providers with the JSON provider (for hosts such as Kestrel's).</summary>
    public static ILoggingBuilder AddAsterismJson(this ILoggingBuilder builder, TextWriter output, bool debug = false)
    {
        var minimum = debug ? LogLevel.Debug : LogLevel.Information;
        builder.ClearProviders();
        builder.SetMinimumLevel(minimum);
        builder.AddProvider(new JsonLoggerProvider(output, minimum));
        return builder;
    }
}
