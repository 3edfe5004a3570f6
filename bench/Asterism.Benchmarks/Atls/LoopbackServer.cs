using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Asterism.Benchmarks.Atls;

/// <summary>A Kestrel HTTP/2 endpoint on 127.0.0.1 (free port) answering "ok" at "/", for handshake benchmarks.</summary>
public sealed class LoopbackServer(WebApplication app, string url) : IAsyncDisposable
{
    public string Url { get; } = url;

    public static async Task<LoopbackServer> StartAsync(Action<ListenOptions> configure, CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l =>
        {
            l.Protocols = HttpProtocols.Http2;
            configure(l);
        }));
        var app = builder.Build();
        app.MapGet("/", () => "ok");
        await app.StartAsync(cancellationToken);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        return new LoopbackServer(app, $"https://127.0.0.1:{new Uri(address).Port}/");
    }

    /// <summary>One HTTP/2 GET over a new connection made by <paramref name="handler"/> (disposed afterwards).</summary>
    public static async Task FreshRequestAsync(HttpMessageHandler handler, string url, CancellationToken cancellationToken)
    {
        using var client = new HttpClient(handler, disposeHandler: true)
        {
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        using var response = await client.GetAsync(url, cancellationToken);
        response.EnsureSuccessStatusCode();
        await response.Content.ReadAsByteArrayAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
