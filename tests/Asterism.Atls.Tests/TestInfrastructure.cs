using System.Collections.Concurrent;
using System.Net;
using Asterism.Atls.Tests.Probe;
using Asterism.Tests;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Asterism.Atls.Tests;

/// <summary>Collects formatted log lines from every logger it creates.</summary>
public sealed class CollectingLoggerProvider : ILoggerProvider
{
    public ConcurrentQueue<string> Lines { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public ILoggerFactory Factory() => LoggerFactory.Create(b => b.AddProvider(this).SetMinimumLevel(LogLevel.Debug));

    public bool Contains(string text) => Lines.Any(l => l.Contains(text, StringComparison.Ordinal));

    public string Dump() => string.Join('\n', Lines);

    public void Dispose()
    {
    }

    private sealed class Logger(CollectingLoggerProvider owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner.Lines.Enqueue($"{logLevel}: {Asterism.Logging.LogText.Format(state, exception, formatter)}");
    }
}

/// <summary>Counts calls that reached the service.</summary>
public sealed class CallCounter
{
    private int _calls;

    public int Calls => Volatile.Read(ref _calls);

    /// <summary>Runs inside each call, after it is counted (e.g. to stop the server mid-call, as a recovered node does).</summary>
    public Action? OnCall { get; set; }

    public void Increment()
    {
        Interlocked.Increment(ref _calls);
        OnCall?.Invoke();
    }
}

public sealed class ProberService(CallCounter counter) : Prober.ProberBase
{
    public override Task<PingReply> Ping(PingRequest request, ServerCallContext context)
    {
        counter.Increment();
        var tls = context.GetHttpContext().Features.Get<ITlsHandshakeFeature>();
        return Task.FromResult(new PingReply
        {
            Text = request.Text,
            PeerVariant = context.GetAtlsPeer()?.Variant.Name ?? "",
            Tls = tls is null ? "" : $"{tls.Protocol} {tls.NegotiatedCipherSuite} {tls.HostName}",
        });
    }

    public override async Task Exchange(IAsyncStreamReader<PingRequest> requestStream, IServerStreamWriter<PingReply> responseStream, ServerCallContext context)
    {
        if (!await requestStream.MoveNext(context.CancellationToken))
        {
            return;
        }
        await responseStream.WriteAsync(new PingReply { Text = requestStream.Current.Text }, context.CancellationToken);
        if (await requestStream.MoveNext(context.CancellationToken))
        {
            counter.Increment();
            // As the RecoveryServer: end the call only after the client's half-close, so the client is done writing.
            while (await requestStream.MoveNext(context.CancellationToken))
            {
            }
        }
    }
}

/// <summary>A real Kestrel gRPC server on 127.0.0.1 with an ephemeral port.</summary>
public sealed class ProbeServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private ProbeServer(WebApplication app, int port, CallCounter counter)
    {
        _app = app;
        Port = port;
        Counter = counter;
    }

    public int Port { get; }

    public CallCounter Counter { get; }

    public string Address => $"https://127.0.0.1:{Port}";

    public static async Task<ProbeServer> StartAsync(Action<ListenOptions> configure, ILoggerProvider logs)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders().AddProvider(logs).SetMinimumLevel(LogLevel.Information);
        builder.Services.AddGrpc();
        var counter = new CallCounter();
        builder.Services.AddSingleton(counter);
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, listen =>
        {
            listen.Protocols = HttpProtocols.Http2;
            configure(listen);
        }));
        var app = builder.Build();
        app.MapGrpcService<ProberService>();
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        return new ProbeServer(app, new Uri(address).Port, counter);
    }

    public async Task<PingReply> PingAsync(HttpMessageHandler handler, string text = "hello")
    {
        using var channel = GrpcChannel.ForAddress(Address, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
        var client = new Prober.ProberClient(channel);
        // Hang detector only (a refused call fails long before it): generous for a machine at load 100.
        return await client.PingAsync(new PingRequest { Text = text }, deadline: DateTime.UtcNow.Add(Poll.Hang));
    }

    /// <summary>Graceful stop, as a node stops its RecoveryServer once it has its key.</summary>
    public Task StopAsync() => _app.StopAsync();

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
