using System.Text.Json;
using Asterism.Crypto;
using Microsoft.Extensions.Logging;

namespace Asterism.Logging.Tests;

public class JsonLogFormatterTests
{
    private sealed class FixedTime(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }

    private static (ILoggerFactory Factory, StringWriter Output) Create(bool debug = false)
    {
        var output = new StringWriter();
        var factory = JsonLogging.CreateFactory(output, debug, new FixedTime(new DateTimeOffset(2022, 9, 8, 9, 56, 43, TimeSpan.Zero)));
        return (factory, output);
    }

    private static JsonElement[] Lines(StringWriter output) =>
        output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => JsonDocument.Parse(l).RootElement).ToArray();

    [Fact]
    public void Info_NamedLogger_EnvelopeInOrder()
    {
        var (factory, output) = Create();
        factory.CreateLogger("rejoinClient").Info("Requesting rejoin ticket", [Field.Of("endpoint", "127.42.0.2:30090")]);

        var line = Assert.Single(Lines(output));
        var names = line.EnumerateObject().Select(p => p.Name).ToArray();
        Assert.Equal(["level", "ts", "logger", "caller", "msg", "endpoint"], names);
        Assert.Equal("INFO", line.GetProperty("level").GetString());
        Assert.Equal("2022-09-08T09:56:43.000Z", line.GetProperty("ts").GetString());
        Assert.True(DateTimeOffset.TryParse(line.GetProperty("ts").GetString(), out var ts) && ts.Offset == TimeSpan.Zero);
        Assert.Equal("rejoinClient", line.GetProperty("logger").GetString());
        Assert.Matches(@"^Asterism\.Logging\.Tests/JsonLogFormatterTests\.cs:\d+$", line.GetProperty("caller").GetString());
        Assert.Equal("Requesting rejoin ticket", line.GetProperty("msg").GetString());
        Assert.Equal("127.42.0.2:30090", line.GetProperty("endpoint").GetString());
    }

    [Fact]
    public void Info_RootLogger_OmitsLoggerKey()
    {
        var (factory, output) = Create();
        factory.CreateLogger("").Info("Starting disk-mapper", [Field.Of("version", "0.1.0"), Field.Of("cloudProvider", "local")]);
        var line = Assert.Single(Lines(output));
        Assert.False(line.TryGetProperty("logger", out _));
        Assert.Equal("local", line.GetProperty("cloudProvider").GetString());
    }

    [Theory]
    [InlineData(LogLevel.Debug, "DEBUG")]
    [InlineData(LogLevel.Information, "INFO")]
    [InlineData(LogLevel.Warning, "WARN")]
    [InlineData(LogLevel.Error, "ERROR")]
    [InlineData(LogLevel.Critical, "ERROR")]
    public void Log_Levels_UpperCaseNames(LogLevel level, string expected)
    {
        var (factory, output) = Create(debug: true);
        factory.CreateLogger("x").Log(level, "Plain message");
        Assert.Equal(expected, Assert.Single(Lines(output)).GetProperty("level").GetString());
    }

    [Fact]
    public void Debug_NotEnabled_WritesNothing()
    {
        var (factory, output) = Create(debug: false);
        factory.CreateLogger("x").Debug("Hidden");
        Assert.Empty(output.ToString());
    }

    [Fact]
    public void Fields_Types_RenderAsJsonTypes()
    {
        var (factory, output) = Create();
        factory.CreateLogger("x").Warn("Typed", [
            Field.Of("count", 3), Field.Of("ok", true), Field.Of("endpoints", new[] { "a:1", "b:2" }),
            Field.Of("duration", TimeSpan.FromMilliseconds(1500)), Field.Of("nothing", null),
            Field.Of("error", new InvalidOperationException("boom")),
        ]);
        var line = Assert.Single(Lines(output));
        Assert.Equal(3, line.GetProperty("count").GetInt32());
        Assert.True(line.GetProperty("ok").GetBoolean());
        Assert.Equal(["a:1", "b:2"], line.GetProperty("endpoints").EnumerateArray().Select(e => e.GetString()!).ToArray());
        Assert.Equal("1.5s", line.GetProperty("duration").GetString());
        Assert.Equal(JsonValueKind.Null, line.GetProperty("nothing").ValueKind);
        Assert.Equal("boom", line.GetProperty("error").GetString());
    }

    [Fact]
    public void Fields_KeyMaterial_NeverReachesOutput()
    {
        var (factory, output) = Create(debug: true);
        var raw = Enumerable.Range(0, 32).Select(i => (byte)(0xA0 + i)).ToArray();
        using var secret = SecretBytes.CopyOf(raw);
        using var master = MasterSecret.FromBytes(raw, raw);
        var log = factory.CreateLogger("recoveryServer");
        log.Info("Received key", [Field.Of("key", secret), Field.Of("raw", raw), Field.Of("memory", new ReadOnlyMemory<byte>(raw)), Field.Of("master", master)]);
        log.LogInformation("Structured {Key}", secret);

        var text = output.ToString();
        Assert.DoesNotContain(Convert.ToHexString(raw), text, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(Convert.ToBase64String(raw), text);
        Assert.DoesNotContain(Convert.ToBase64String(raw)[..20], text);
        var lines = Lines(output);
        Assert.Equal("[redacted]", lines[0].GetProperty("key").GetString());
        Assert.Equal("[redacted]", lines[0].GetProperty("raw").GetString());
        Assert.Equal("[redacted]", lines[0].GetProperty("memory").GetString());
        Assert.Equal("[redacted]", lines[0].GetProperty("master").GetString());
        Assert.Equal("Structured [redacted]", lines[1].GetProperty("msg").GetString());
    }

    [Fact]
    public void StructuredState_FromTemplate_FieldsWithoutOriginalFormat()
    {
        var (factory, output) = Create();
        factory.CreateLogger("kestrel").LogWarning("Connection {Id} closed", "c1");
        var line = Assert.Single(Lines(output));
        Assert.Equal("Connection c1 closed", line.GetProperty("msg").GetString());
        Assert.Equal("c1", line.GetProperty("Id").GetString());
        Assert.False(line.TryGetProperty("{OriginalFormat}", out _));
        Assert.False(line.TryGetProperty("caller", out _));
    }

    [Fact]
    public void Exception_OnlyTypeAndMessage()
    {
        var (factory, output) = Create();
        factory.CreateLogger("x").LogError(new IOException("disk gone"), "Failed");
        var line = Assert.Single(Lines(output));
        Assert.Equal("IOException: disk gone", line.GetProperty("error").GetString());
        Assert.DoesNotContain(" at ", output.ToString());
    }

    [Fact]
    public void ConcurrentWriters_LinesNeverInterleave()
    {
        var (factory, output) = Create();
        Parallel.For(0, 200, i => factory.CreateLogger("p" + (i % 4)).Info("Line", [Field.Of("i", i)]));
        Assert.Equal(200, Lines(output).Length);
    }

    [Theory]
    [InlineData("/src/Asterism.Node/Rejoin/RejoinClient.cs", 96, "Rejoin/RejoinClient.cs:96")]
    [InlineData("RejoinClient.cs", 5, "RejoinClient.cs:5")]
    [InlineData(@"C:\a\b\c.cs", 1, "b/c.cs:1")]
    [InlineData("", 1, "")]
    public void ShortCaller_Paths_LastFolderAndFile(string path, int line, string expected) =>
        Assert.Equal(expected, LogRecord.ShortCaller(path, line));
}
