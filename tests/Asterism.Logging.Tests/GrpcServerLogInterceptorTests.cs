using System.Net;
using System.Text.Json;
using Asterism.Logging.Tests.Probe;
using Asterism.Protocol.Recover;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Asterism.Logging.Tests;

public sealed class GrpcServerLogInterceptorTests : IAsyncLifetime
{
    private static readonly byte[] Secret = [.. Enumerable.Range(0, 32).Select(i => (byte)(0xC0 + i))];
    private readonly SignallingWriter _output = new();
    private readonly WaitCounter _waits = new();
    private WebApplication? _app;
    private GrpcChannel? _channel;
    private string _address = "";

    private Probe.Probe.ProbeClient Client => new(_channel!);

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
        var loggers = JsonLogging.CreateFactory(_output, debug: true);
        builder.Services.AddSingleton(_waits);
        builder.Services.AddGrpc(o => o.Interceptors.Add<GrpcServerLogInterceptor>(GrpcServerLog.CreateLogger(loggers, "recoveryServer"), TimeProvider.System));
        _app = builder.Build();
        _app.MapGrpcService<ProbeService>();
        _app.MapGrpcService<RecoverStub>();
        await _app.StartAsync();
        var address = _app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
        _address = address;
        _channel = GrpcChannel.ForAddress(address);
    }

    public async Task DisposeAsync()
    {
        _channel?.Dispose();
        if (_app is not null)
        {
            await _app.DisposeAsync();
        }
    }

    [Fact]
    public async Task Recover_StreamingOk_WritesTheSeedLine()
    {
        using (var call = new API.APIClient(_channel!).Recover())
        {
            await call.RequestStream.WriteAsync(new RecoverMessage { MeasurementSecret = ByteString.CopyFrom(Secret) });
            await call.RequestStream.CompleteAsync();
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
            }
        }

        var line = await NextLineAsync();
        Assert.Equal(["level", "ts", "logger", "caller", "msg", .. GrpcServerLog.FieldNames], line.EnumerateObject().Select(p => p.Name));
        Assert.Equal(
            ["level", "ts", "logger", "caller", "msg", "grpc.start_time", "system", "span.kind", "grpc.service", "grpc.method", "peer.address", "grpc.code", "grpc.time_ms"],
            line.EnumerateObject().Select(p => p.Name));
        Assert.Equal("INFO", line.GetProperty("level").GetString());
        Assert.Equal("recoveryServer.gRPC", line.GetProperty("logger").GetString());
        Assert.Equal("finished streaming call with code OK", line.GetProperty("msg").GetString());
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", line.GetProperty("grpc.start_time").GetString());
        Assert.True(DateTimeOffset.TryParse(line.GetProperty("grpc.start_time").GetString(), out _));
        Assert.Equal("grpc", line.GetProperty("system").GetString());
        Assert.Equal("server", line.GetProperty("span.kind").GetString());
        Assert.Equal("recoverproto.API", line.GetProperty("grpc.service").GetString());
        Assert.Equal("Recover", line.GetProperty("grpc.method").GetString());
        Assert.Matches(@"^127\.0\.0\.1:\d+$", line.GetProperty("peer.address").GetString());
        Assert.Equal("OK", line.GetProperty("grpc.code").GetString());
        Assert.Equal(JsonValueKind.Number, line.GetProperty("grpc.time_ms").ValueKind);
        Assert.True(line.GetProperty("grpc.time_ms").GetDouble() >= 0);
    }

    [Fact]
    public async Task Unary_Ok_UnaryMessageAndProbeMethod()
    {
        await Client.UnaryAsync(new ProbeRequest { Outcome = "ok" });
        var line = await NextLineAsync();
        Assert.Equal("finished unary call with code OK", line.GetProperty("msg").GetString());
        Assert.Equal("probe.Probe", line.GetProperty("grpc.service").GetString());
        Assert.Equal("Unary", line.GetProperty("grpc.method").GetString());
        Assert.Equal("INFO", line.GetProperty("level").GetString());
    }

    [Theory]
    [InlineData("OK", "OK", "INFO")]
    [InlineData("PermissionDenied", "PermissionDenied", "WARN")]
    [InlineData("Internal", "Internal", "ERROR")]
    [InlineData("throw", "Unknown", "ERROR")]
    [InlineData("set:FailedPrecondition", "FailedPrecondition", "WARN")]
    public async Task EveryCallKind_Outcome_LoggedWithCodeAndLevel(string outcome, string code, string level)
    {
        var request = new ProbeRequest { Outcome = outcome, Secret = ByteString.CopyFrom(Secret) };
        await Swallow(Client.UnaryAsync(request).ResponseAsync);
        using (var clientStream = Client.ClientStream())
        {
            await clientStream.RequestStream.WriteAsync(request);
            await clientStream.RequestStream.CompleteAsync();
            await Swallow(clientStream.ResponseAsync);
        }
        using (var serverStream = Client.ServerStream(request))
        {
            await Swallow(Drain(serverStream.ResponseStream));
        }
        using (var duplex = Client.Duplex())
        {
            await duplex.RequestStream.WriteAsync(request);
            await duplex.RequestStream.CompleteAsync();
            await Swallow(Drain(duplex.ResponseStream));
        }

        var lines = new[] { await NextLineAsync(), await NextLineAsync(), await NextLineAsync(), await NextLineAsync() };
        Assert.Equal(["Unary", "ClientStream", "ServerStream", "Duplex"], lines.Select(l => l.GetProperty("grpc.method").GetString()));
        Assert.Equal(
            ["finished unary call with code " + code, .. Enumerable.Repeat("finished streaming call with code " + code, 3)],
            lines.Select(l => l.GetProperty("msg").GetString()));
        Assert.All(lines, l => Assert.Equal(code, l.GetProperty("grpc.code").GetString()));
        Assert.All(lines, l => Assert.Equal(level, l.GetProperty("level").GetString()));
        Assert.DoesNotContain(Convert.ToBase64String(Secret)[..16], _output.ToString());
        Assert.DoesNotContain(Convert.ToHexString(Secret)[..16], _output.ToString(), StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Duplex_ClientCancels_LoggedAsCanceled()
    {
        using var cancel = new CancellationTokenSource();
        using var call = Client.Duplex(cancellationToken: cancel.Token);
        await call.RequestStream.WriteAsync(new ProbeRequest { Outcome = "wait" });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        await cancel.CancelAsync();

        var line = await NextLineAsync();
        Assert.Equal("Canceled", line.GetProperty("grpc.code").GetString());
        Assert.Equal("finished streaming call with code Canceled", line.GetProperty("msg").GetString());
        Assert.Equal("INFO", line.GetProperty("level").GetString());
    }

    [Fact]
    public async Task Unary_DeadlinePasses_LoggedAsDeadlineExceeded()
    {
        // The deadline is the thing under test, so it has to pass on the server. A gRPC client enforces the same
        // deadline itself, from the moment it sent the call, so it cancels before the server's deadline (which starts
        // when the call arrives) and on a loaded machine the server saw a cancellation first and logged Canceled.
        // So the call is made as plain HTTP/2 with a grpc-timeout header and no client-side deadline: only the
        // server's deadline can end it. A call whose deadline passes before it reaches the handler never reaches an
        // interceptor either, hence attempts with a doubling timeout until one reached the handler (bounded at 64 s).
        await Client.UnaryAsync(new ProbeRequest { Outcome = "ok" });
        Assert.Equal("OK", (await NextLineAsync()).GetProperty("grpc.code").GetString());
        using var http = new HttpClient(new SocketsHttpHandler()) { Timeout = Timeout.InfiniteTimeSpan };
        var reached = false;
        for (var seconds = 1; !reached; seconds *= 2)
        {
            Assert.True(seconds <= 64, "no call reached the handler before its deadline, even with 64 s");
            var waitsBefore = _waits.Entered;
            Assert.Equal("4", await UnaryWithServerDeadlineOnlyAsync(http, new ProbeRequest { Outcome = "wait" }, seconds)); // DEADLINE_EXCEEDED
            reached = _waits.Entered > waitsBefore;
        }

        var line = await NextLineAsync();
        Assert.Equal("DeadlineExceeded", line.GetProperty("grpc.code").GetString());
        Assert.Equal("WARN", line.GetProperty("level").GetString());
    }

    /// <summary>probe.Probe/Unary over raw HTTP/2 with <c>grpc-timeout</c>; returns the call's grpc-status.</summary>
    private async Task<string?> UnaryWithServerDeadlineOnlyAsync(HttpClient http, ProbeRequest request, int seconds)
    {
        var message = request.ToByteArray();
        var framed = new byte[5 + message.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(framed.AsSpan(1), (uint)message.Length);
        message.CopyTo(framed, 5);
        using var call = new HttpRequestMessage(HttpMethod.Post, new Uri(new Uri(_address), "/probe.Probe/Unary"))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(framed),
        };
        call.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/grpc");
        call.Headers.TE.Add(new System.Net.Http.Headers.TransferCodingWithQualityHeaderValue("trailers"));
        call.Headers.Add("grpc-timeout", $"{seconds}S");
        using var response = await http.SendAsync(call);
        await response.Content.ReadAsByteArrayAsync();
        // A status without a body comes as headers ("trailers-only"), otherwise in the trailers.
        return response.Headers.TryGetValues("grpc-status", out var inHeaders) ? inHeaders.Single()
            : response.TrailingHeaders.TryGetValues("grpc-status", out var inTrailers) ? inTrailers.Single() : null;
    }

    [Theory]
    [InlineData(StatusCode.OK, LogLevel.Information)]
    [InlineData(StatusCode.Cancelled, LogLevel.Information)]
    [InlineData(StatusCode.InvalidArgument, LogLevel.Information)]
    [InlineData(StatusCode.NotFound, LogLevel.Information)]
    [InlineData(StatusCode.AlreadyExists, LogLevel.Information)]
    [InlineData(StatusCode.Unauthenticated, LogLevel.Information)]
    [InlineData(StatusCode.DeadlineExceeded, LogLevel.Warning)]
    [InlineData(StatusCode.PermissionDenied, LogLevel.Warning)]
    [InlineData(StatusCode.ResourceExhausted, LogLevel.Warning)]
    [InlineData(StatusCode.FailedPrecondition, LogLevel.Warning)]
    [InlineData(StatusCode.Aborted, LogLevel.Warning)]
    [InlineData(StatusCode.OutOfRange, LogLevel.Warning)]
    [InlineData(StatusCode.Unavailable, LogLevel.Warning)]
    [InlineData(StatusCode.Unknown, LogLevel.Error)]
    [InlineData(StatusCode.Unimplemented, LogLevel.Error)]
    [InlineData(StatusCode.Internal, LogLevel.Error)]
    [InlineData(StatusCode.DataLoss, LogLevel.Error)]
    public async Task Unary_EveryStatusCode_LevelAsGoGrpcMiddleware(StatusCode code, LogLevel expected)
    {
        Assert.Equal(expected, GrpcServerLog.LevelOf(code));
        await Swallow(Client.UnaryAsync(new ProbeRequest { Outcome = code.ToString() }).ResponseAsync);
        var line = await NextLineAsync();
        Assert.Equal(GrpcServerLog.CodeName(code), line.GetProperty("grpc.code").GetString());
        Assert.Equal(JsonLogFormatter.LevelName(expected), line.GetProperty("level").GetString());
    }

    [Fact]
    public void CodeName_Cancelled_SpelledAsGrpc() => Assert.Equal("Canceled", GrpcServerLog.CodeName(StatusCode.Cancelled));

    private static async Task Drain(IAsyncStreamReader<ProbeReply> stream)
    {
        while (await stream.MoveNext(CancellationToken.None))
        {
        }
    }

    private static async Task Swallow(Task call)
    {
        try
        {
            await call;
        }
        catch (RpcException)
        {
        }
    }

    private async Task<JsonElement> NextLineAsync()
    {
        // The line is written when the server's handler ends, which a client cancel does not wait for: wait for it.
        var line = await _output.NextAsync().WaitAsync(TimeSpan.FromMinutes(1));
        return JsonDocument.Parse(line).RootElement;
    }

    /// <summary>Captures lines and hands them out in order as they are written.</summary>
    private sealed class SignallingWriter : StringWriter
    {
        private readonly System.Threading.Channels.Channel<string> _lines = System.Threading.Channels.Channel.CreateUnbounded<string>();

        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            _lines.Writer.TryWrite(value ?? "");
        }

        public Task<string> NextAsync() => _lines.Reader.ReadAsync().AsTask();
    }

    /// <summary>Counts the calls that reached the "wait" handler (an earlier attempt may reach it late; any count rise will do).</summary>
    private sealed class WaitCounter
    {
        private int _entered;

        public int Entered => Volatile.Read(ref _entered);

        public void Enter() => Interlocked.Increment(ref _entered);
    }

    private sealed class ProbeService(WaitCounter waits) : Probe.Probe.ProbeBase
    {
        public override async Task<ProbeReply> Unary(ProbeRequest request, ServerCallContext context)
        {
            await ActAsync(request, context);
            return new ProbeReply { Secret = request.Secret };
        }

        public override async Task<ProbeReply> ClientStream(IAsyncStreamReader<ProbeRequest> requestStream, ServerCallContext context)
        {
            await requestStream.MoveNext(context.CancellationToken);
            await ActAsync(requestStream.Current, context);
            return new ProbeReply { Secret = requestStream.Current.Secret };
        }

        public override async Task ServerStream(ProbeRequest request, IServerStreamWriter<ProbeReply> responseStream, ServerCallContext context)
        {
            await responseStream.WriteAsync(new ProbeReply { Secret = request.Secret }, context.CancellationToken);
            await ActAsync(request, context);
        }

        public override async Task Duplex(IAsyncStreamReader<ProbeRequest> requestStream, IServerStreamWriter<ProbeReply> responseStream, ServerCallContext context)
        {
            await requestStream.MoveNext(context.CancellationToken);
            await responseStream.WriteAsync(new ProbeReply { Secret = requestStream.Current.Secret }, context.CancellationToken);
            await ActAsync(requestStream.Current, context);
        }

        private async Task ActAsync(ProbeRequest request, ServerCallContext context)
        {
            switch (request.Outcome)
            {
                case "ok" or "OK":
                    return;
                case "throw":
                    throw new InvalidOperationException("handler bug");
                case "wait":
                    // Waiting is the point: the call must outlive its deadline or be cancelled.
                    waits.Enter();
                    await Task.Delay(Timeout.Infinite, context.CancellationToken);
                    return;
                case var set when set.StartsWith("set:", StringComparison.Ordinal):
                    context.Status = new Status(Enum.Parse<StatusCode>(set[4..]), "set by the handler");
                    return;
                default:
                    throw new RpcException(new Status(Enum.Parse<StatusCode>(request.Outcome), "refused by the probe"));
            }
        }
    }

    private sealed class RecoverStub : API.APIBase
    {
        public override async Task Recover(IAsyncStreamReader<RecoverMessage> requestStream, IServerStreamWriter<RecoverResponse> responseStream, ServerCallContext context)
        {
            while (await requestStream.MoveNext(context.CancellationToken))
            {
                await responseStream.WriteAsync(new RecoverResponse { DiskUuid = "d" }, context.CancellationToken);
            }
        }
    }
}
