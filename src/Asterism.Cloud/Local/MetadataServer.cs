using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Asterism.Cloud.Local;

/// <summary>What the metadata API serves and controls; implemented by <see cref="LocalCloudProvider"/>.</summary>
internal interface ICloudControl
{
    IReadOnlyList<InstanceInfo> Instances();
    string LoadBalancerAddress { get; }
    Task<PowerResponse> PowerAsync(PowerAction action, IReadOnlyList<string>? names, CancellationToken cancellationToken);
    IReadOnlyList<string> UnknownNames(IEnumerable<string> names);
    void RequestShutdown();
    Task<InstanceInfo> AddControlPlaneAsync(CancellationToken cancellationToken);
}

/// <summary>
/// The metadata and control API on http://127.A.B.1:8080 (Kestrel minimal API, camelCase JSON). Reads (GET) are
/// open: nodes need the instance list and endpoints, and none of it is secret. Every other method changes
/// something and needs the workspace's credential (see README, "Who can reach what").
/// </summary>
internal sealed class MetadataServer : IAsyncDisposable
{
    private const int MaxBodyBytes = 64 * 1024;
    private readonly WebApplication _app;

    public MetadataServer(IPAddress address, int port, ICloudControl cloud, ApiCredentialVerifier verifier, ILoggerFactory loggerFactory)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(loggerFactory);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(address, port);
            k.Limits.MaxRequestBodySize = MaxBodyBytes;
            k.AddServerHeader = false;
        });
        builder.Services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.DefaultIgnoreCondition = CloudJson.Options.DefaultIgnoreCondition;
        });
        _app = builder.Build();
        var logger = loggerFactory.CreateLogger("Asterism.Cloud.Metadata");
        _app.RequireCredential(verifier, logger, "cloud", ApiAuthorization.IsMutating);
        Map(_app, cloud, logger);
        Url = $"http://{address}:{port}";
    }

    public string Url { get; }

    public Task StartAsync(CancellationToken cancellationToken) => _app.StartAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            await _app.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static void Map(WebApplication app, ICloudControl cloud, ILogger logger)
    {
        app.MapGet("/v1/self", (string? name) =>
        {
            if (string.IsNullOrEmpty(name))
            {
                return Bad(logger, "/v1/self", "query parameter 'name' is required");
            }
            var self = cloud.Instances().FirstOrDefault(i => i.Name == name);
            return self is null
                ? Results.Json(new ErrorResponse { Error = "unknown instance" }, CloudJson.Options, statusCode: StatusCodes.Status404NotFound)
                : Results.Json(self, CloudJson.Options);
        });
        app.MapGet("/v1/instances", () => Results.Json(new InstanceListResponse { Instances = cloud.Instances() }, CloudJson.Options));
        app.MapGet("/v1/endpoint", () => Results.Json(new EndpointResponse { LoadBalancer = cloud.LoadBalancerAddress }, CloudJson.Options));
        app.MapPost("/v1/power", async (HttpRequest request, CancellationToken ct) =>
        {
            PowerRequest? body;
            try
            {
                body = await JsonSerializer.DeserializeAsync<PowerRequest>(request.Body, CloudJson.Options, ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is JsonException or BadHttpRequestException)
            {
                return Bad(logger, "/v1/power", "body is not a valid power request");
            }
            if (body is null || !PowerActions.TryParse(body.Action, out var action))
            {
                return Bad(logger, "/v1/power", $"unknown action '{body?.Action}' (expected stop, start, reboot or crash)");
            }
            if (body.Names is { } names)
            {
                if (names.Count == 0 || names.Any(string.IsNullOrEmpty))
                {
                    return Bad(logger, "/v1/power", "names must be null (all instances) or a non-empty list of instance names");
                }
                var unknown = cloud.UnknownNames(names);
                if (unknown.Count > 0)
                {
                    return Bad(logger, "/v1/power", $"unknown instance(s): {string.Join(", ", unknown)}");
                }
            }
            // Power actions finish even if the caller goes away: a half-applied reboot helps nobody.
            return Results.Json(await cloud.PowerAsync(action, body.Names, CancellationToken.None).ConfigureAwait(false), CloudJson.Options);
        });
        // A new control-plane instance for the running cluster (a replacement for a removed one): planned, provisioned and
        // started; it joins through the JoinServices like any control plane. Needs the credential (POST).
        app.MapPost("/v1/instances", async () =>
        {
            try
            {
                return Results.Json(await cloud.AddControlPlaneAsync(CancellationToken.None).ConfigureAwait(false), CloudJson.Options);
            }
            catch (CloudConfigException e)
            {
                return Bad(logger, "/v1/instances", e.Message);
            }
        });
        app.MapPost("/v1/shutdown", (HttpContext context) =>
        {
            context.Response.OnCompleted(() =>
            {
                cloud.RequestShutdown();
                return Task.CompletedTask;
            });
            return Results.Json(new ShutdownResponse(), CloudJson.Options, statusCode: StatusCodes.Status202Accepted);
        });
    }

    private static IResult Bad(ILogger logger, string path, string error)
    {
        Log.BadRequest(logger, path, error);
        return Results.Json(new ErrorResponse { Error = error }, CloudJson.Options, statusCode: StatusCodes.Status400BadRequest);
    }
}
