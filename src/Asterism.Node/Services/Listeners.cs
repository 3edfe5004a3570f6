using System.Net;
using Asterism.Logging;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Services;

/// <summary>
/// Starts one Kestrel host bound to the node's own address and one port; each boot phase starts and stops its own
/// listeners (the RecoveryServer's port closes the moment the node has its key).
/// </summary>
public static class Listeners
{
    /// <summary>gRPC messages of every node service are small: refuse anything over 64 KiB.</summary>
    public const int MaxMessageSize = 64 * 1024;

    /// <summary>
    /// Outer bound on the connections one listener holds, whatever its middleware does. The aTLS budgets keep a
    /// listener at 256 pending and 128 authenticated connections by shedding (so the operator is never refused by
    /// them); Kestrel refuses beyond this one, so it sits well above their sum to leave room for shed connections
    /// that are still closing.
    /// </summary>
    public const int MaxConnections = 1024;

    /// <summary>
    /// Starts a host for <paramref name="component"/> (its logger name): every gRPC call it serves is logged when it
    /// finishes, as <c>component.gRPC</c>.
    /// </summary>
    public static async Task<WebApplication> StartAsync(
        IPAddress address,
        int port,
        ILoggerFactory loggers,
        string component,
        Action<ListenOptions> configureListen,
        Action<IServiceCollection> configureServices,
        Action<WebApplication> map,
        CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.AddAsterismJson(Console.Out);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = 1024 * 1024;
            kestrel.Limits.MaxConcurrentConnections = MaxConnections;
            kestrel.Listen(address, port, configureListen);
        });
        builder.WebHost.UseShutdownTimeout(TimeSpan.FromSeconds(2));
        builder.Services.AddGrpc(options =>
        {
            options.MaxReceiveMessageSize = MaxMessageSize;
            options.MaxSendMessageSize = MaxMessageSize;
            options.EnableDetailedErrors = false;
            // Every finished call, under "<component>.gRPC" of the node's own log (the host's log is WARN and up).
            options.Interceptors.Add<GrpcServerLogInterceptor>(GrpcServerLog.CreateLogger(loggers, component), TimeProvider.System);
        });
        configureServices(builder.Services);
        var app = builder.Build();
        map(app);
        await app.StartAsync(cancellationToken);
        return app;
    }

    /// <summary>Stops a host gracefully (in-flight calls finish) and disposes it.</summary>
    public static async Task StopAsync(WebApplication? app)
    {
        if (app is null)
        {
            return;
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        try
        {
            await app.StopAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
        }
        await app.DisposeAsync();
    }
}
