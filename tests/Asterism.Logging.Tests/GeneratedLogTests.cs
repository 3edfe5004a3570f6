using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.Extensions.Logging;

// Fixed texts on purpose, as in every component's log class.
#pragma warning disable SYSLIB1015

namespace Asterism.Logging.Tests;

public static partial class GeneratedLogTests
{
    [LoggerMessage(1102, LogLevel.Information, "Waiting for decryption key")]
    private static partial void Waiting(ILogger logger, string uuid, string recoveryEndpoint,
        [CallerFilePath] string callerFile = "", [CallerLineNumber] int callerLine = 0);

    [Fact]
    public static void LoggerMessage_CallerInfo_BecomesEnvelopeCaller()
    {
        var output = new StringWriter();
        using var factory = JsonLogging.CreateFactory(output);
        Waiting(factory.CreateLogger("setupManager"), "0b6a", "127.42.0.10:9999");

        var line = JsonDocument.Parse(output.ToString()).RootElement;
        Assert.Equal(["level", "ts", "logger", "caller", "msg", "uuid", "recoveryEndpoint"], line.EnumerateObject().Select(p => p.Name));
        Assert.Matches(@"^Asterism\.Logging\.Tests/GeneratedLogTests\.cs:\d+$", line.GetProperty("caller").GetString());
        Assert.Equal("Waiting for decryption key", line.GetProperty("msg").GetString());
        Assert.Equal("127.42.0.10:9999", line.GetProperty("recoveryEndpoint").GetString());
    }

    [Fact]
    public static void LogText_GeneratedState_MessageThenFields()
    {
        var lines = new List<string>();
        Waiting(new TextLogger(lines), "0b6a", "127.42.0.10:9999");
        Assert.Equal("Waiting for decryption key uuid=0b6a recoveryEndpoint=127.42.0.10:9999", Assert.Single(lines));
    }

    [Fact]
    public static void LogText_TemplateWithHoles_FieldsNotRepeated()
    {
        var lines = new List<string>();
        new TextLogger(lines).LogWarning("Backend healthy port={Port}", 6443);
        Assert.Equal("Backend healthy port=6443", Assert.Single(lines));
    }

    private sealed class TextLogger(List<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Add(LogText.Format(state, exception, formatter));
    }
}
