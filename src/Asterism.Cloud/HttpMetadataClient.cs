using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Asterism.Cloud;

/// <summary>
/// <see cref="IMetadataClient"/> over the provider's HTTP API. Responses are size-limited, and every address it
/// returns is checked to lie in 127.0.0.0/8 so a confused provider cannot make a node dial outside loopback.
/// </summary>
public class HttpMetadataClient : IMetadataClient, IDisposable
{
    private const int MaxResponseBytes = 1024 * 1024;
    private readonly HttpClient _http;
    private readonly bool _ownsHttp;

    private readonly string? _authorization;

    public HttpMetadataClient(Uri baseUrl, HttpClient? http = null)
        : this(baseUrl, http, null)
    {
    }

    /// <summary>A client that sends <paramref name="authorization"/> (the workspace credential) with every request.</summary>
    protected HttpMetadataClient(Uri baseUrl, HttpClient? http, string? authorization)
    {
        _authorization = authorization;
        ArgumentNullException.ThrowIfNull(baseUrl);
        if (!IPAddress.TryParse(baseUrl.Host, out var host) || !CloudSubnet.IsLoopbackV4(host))
        {
            throw new ArgumentException($"metadata URL {baseUrl} is not on a 127.0.0.0/8 address", nameof(baseUrl));
        }
        BaseUrl = baseUrl;
        _ownsHttp = http is null;
        _http = http ?? new HttpClient(new SocketsHttpHandler { UseProxy = false, ConnectTimeout = TimeSpan.FromSeconds(2) })
        {
            Timeout = TimeSpan.FromSeconds(30),
            MaxResponseContentBufferSize = MaxResponseBytes,
        };
    }

    public Uri BaseUrl { get; }

    public async Task<InstanceInfo> SelfAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        var info = await GetAsync<InstanceInfo>("v1/self?name=" + Uri.EscapeDataString(name), cancellationToken).ConfigureAwait(false);
        return CheckInstance(info);
    }

    public async Task<IReadOnlyList<InstanceInfo>> ListAsync(CancellationToken cancellationToken)
    {
        var list = await GetAsync<InstanceListResponse>("v1/instances", cancellationToken).ConfigureAwait(false);
        return list.Instances?.Select(CheckInstance).ToList() ?? throw new MetadataException("instance list missing");
    }

    public async Task<string> LoadBalancerEndpointAsync(CancellationToken cancellationToken)
    {
        var endpoint = await GetAsync<EndpointResponse>("v1/endpoint", cancellationToken).ConfigureAwait(false);
        CheckAddress(endpoint.LoadBalancer);
        return endpoint.LoadBalancer;
    }

    public void Dispose()
    {
        if (_ownsHttp)
        {
            _http.Dispose();
        }
        GC.SuppressFinalize(this);
    }

    protected async Task<T> GetAsync<T>(string relative, CancellationToken cancellationToken)
        where T : class
    {
        HttpResponseMessage response;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(BaseUrl, relative));
            Authorize(request);
            response = await _http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            throw new MetadataException($"metadata API {BaseUrl} unreachable: {e.Message}", null, e);
        }
        catch (TaskCanceledException e) when (!cancellationToken.IsCancellationRequested)
        {
            throw new MetadataException($"metadata API {BaseUrl} timed out", null, e);
        }
        using (response)
        {
            return await ReadAsync<T>(response, cancellationToken).ConfigureAwait(false);
        }
    }

    protected async Task<T> PostAsync<T>(string relative, object body, CancellationToken cancellationToken)
        where T : class
    {
        HttpResponseMessage response;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(BaseUrl, relative))
            {
                Content = JsonContent.Create(body, body.GetType(), options: CloudJson.Options),
            };
            Authorize(request);
            response = await _http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            throw new MetadataException($"cloud API {BaseUrl} unreachable: {e.Message}", null, e);
        }
        catch (TaskCanceledException e) when (!cancellationToken.IsCancellationRequested)
        {
            throw new MetadataException($"cloud API {BaseUrl} timed out", null, e);
        }
        using (response)
        {
            return await ReadAsync<T>(response, cancellationToken).ConfigureAwait(false);
        }
    }

    private void Authorize(HttpRequestMessage request)
    {
        if (_authorization is not null)
        {
            request.Headers.TryAddWithoutValidation("Authorization", _authorization);
        }
    }

    private static async Task<T> ReadAsync<T>(HttpResponseMessage response, CancellationToken cancellationToken)
        where T : class
    {
        byte[] bytes;
        try
        {
            bytes = await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            throw new MetadataException($"reading cloud API response failed: {e.Message}", (int)response.StatusCode, e);
        }
        if (!response.IsSuccessStatusCode)
        {
            var message = TryError(bytes) ?? response.ReasonPhrase ?? "error";
            throw new MetadataException($"cloud API answered {(int)response.StatusCode}: {message}", (int)response.StatusCode);
        }
        try
        {
            return JsonSerializer.Deserialize<T>(bytes, CloudJson.Options) ?? throw new MetadataException("cloud API answered JSON null");
        }
        catch (JsonException e)
        {
            throw new MetadataException($"cloud API answered invalid JSON: {e.Message}", (int)response.StatusCode, e);
        }
    }

    private static string? TryError(byte[] bytes)
    {
        try
        {
            return JsonSerializer.Deserialize<ErrorResponse>(bytes, CloudJson.Options)?.Error;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static InstanceInfo CheckInstance(InstanceInfo? info)
    {
        if (info is null || string.IsNullOrEmpty(info.Name) || !CloudNames.TryParseRole(info.Role, out _)
            || info.Power is not (CloudNames.Running or CloudNames.Stopped))
        {
            throw new MetadataException("cloud API answered an invalid instance entry");
        }
        CheckAddress(info.Address);
        return info;
    }

    private static void CheckAddress(string? address)
    {
        if (!IPAddress.TryParse(address, out var ip) || !CloudSubnet.IsLoopbackV4(ip))
        {
            throw new MetadataException($"cloud API answered address '{address}' outside 127.0.0.0/8");
        }
    }
}
