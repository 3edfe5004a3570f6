using System.Net;
using System.Text;

namespace Asterism.Cloud.Tests;

public class HttpMetadataClientTests
{
    private static readonly Uri Base = new("http://127.77.0.1:8080");

    private static HttpMetadataClient With(string json, HttpStatusCode status = HttpStatusCode.OK) =>
        new(Base, new HttpClient(new StubHandler(status, json)));

    [Fact]
    public async Task ListAsync_AddressOutsideLoopback_Refused()
    {
        using var client = With("{\"instances\":[{\"name\":\"n\",\"role\":\"control-plane\",\"address\":\"10.0.0.5\",\"power\":\"running\"}]}");
        var e = await Assert.ThrowsAsync<MetadataException>(() => client.ListAsync(CancellationToken.None));
        Assert.Contains("outside 127.0.0.0/8", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"loadBalancer\":\"192.168.1.2\"}")]
    [InlineData("{\"loadBalancer\":\"::1\"}")]
    [InlineData("{\"loadBalancer\":\"lb.example.com\"}")]
    [InlineData("{}")]
    public async Task LoadBalancerEndpointAsync_NotA127Address_Refused(string json)
    {
        using var client = With(json);
        await Assert.ThrowsAsync<MetadataException>(() => client.LoadBalancerEndpointAsync(CancellationToken.None));
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("null")]
    [InlineData("{\"name\":\"n\",\"role\":\"boss\",\"address\":\"127.1.1.10\",\"power\":\"running\"}")]
    [InlineData("{\"name\":\"n\",\"role\":\"worker\",\"address\":\"127.1.1.10\",\"power\":\"sleeping\"}")]
    [InlineData("{\"name\":\"\",\"role\":\"worker\",\"address\":\"127.1.1.10\",\"power\":\"running\"}")]
    [InlineData("{\"name\":42}")]
    public async Task SelfAsync_InvalidAnswer_MetadataException(string json)
    {
        using var client = With(json);
        await Assert.ThrowsAsync<MetadataException>(() => client.SelfAsync("n", CancellationToken.None));
    }

    [Fact]
    public async Task SelfAsync_ErrorStatus_CarriesStatusAndMessage()
    {
        using var client = With("{\"error\":\"unknown instance\"}", HttpStatusCode.NotFound);
        var e = await Assert.ThrowsAsync<MetadataException>(() => client.SelfAsync("n", CancellationToken.None));
        Assert.Equal(404, e.StatusCode);
        Assert.Contains("unknown instance", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ListAsync_NothingListening_MetadataException()
    {
        using var client = new HttpMetadataClient(new Uri($"http://{SubnetAllocator.PickFree().ProviderAddress}:8080"));
        var e = await Assert.ThrowsAsync<MetadataException>(() => client.ListAsync(CancellationToken.None));
        Assert.Contains("unreachable", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("http://10.0.0.1:8080")]
    [InlineData("http://metadata.internal:8080")]
    [InlineData("http://[::1]:8080")]
    public void Ctor_MetadataUrlOutsideLoopback_Refused(string url)
    {
        Assert.Throws<ArgumentException>(() => new HttpMetadataClient(new Uri(url)));
    }

    private sealed class StubHandler(HttpStatusCode status, string json) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Task.FromResult(new HttpResponseMessage(status) { Content = new StringContent(json, Encoding.UTF8, "application/json") });
    }
}
