namespace Asterism.Tpm.Tests;

/// <summary>
/// <see cref="TpmClient.ConnectEndpointAsync"/>, the one parser of every <c>--tpm</c> argument (node and
/// <c>asterism tpm enroll</c>): a swtpm unix socket or a device under /dev, never TCP (anyone on the host could reach
/// it) and never a path that climbs out of /dev.
/// </summary>
public sealed class TpmEndpointTests
{
    [Theory]
    [InlineData("tcp:127.0.0.1:2321")]
    [InlineData("127.0.0.1:2321")]
    [InlineData("localhost:2321")]
    [InlineData("[::1]:2321")]
    [InlineData("swtpm:host=127.0.0.1,port=2321")]
    [InlineData("mssim:host=localhost")]
    [InlineData("tpm.sock")]
    [InlineData("dev/tpmrm0")]
    [InlineData("unix:tpm.sock")]
    [InlineData("")]
    [InlineData(null)]
    public async Task ConnectEndpoint_TcpOrRelative_Refused(string? endpoint)
    {
        var e = await Assert.ThrowsAsync<ArgumentException>(() => TpmClient.ConnectEndpointAsync(endpoint, null, CancellationToken.None));
        Assert.Contains("TCP endpoints are refused", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/dev/../tmp/tpm.sock")]
    [InlineData("/dev/../etc/passwd")]
    [InlineData("/dev/shm/../../tmp/fake-tpm")]
    [InlineData("/dev/tpmrm0\0")]
    public async Task ConnectEndpoint_PathLeavingDev_Refused(string endpoint)
    {
        var e = await Assert.ThrowsAsync<ArgumentException>(() => TpmClient.ConnectEndpointAsync(endpoint, null, CancellationToken.None));
        Assert.Contains("not a TPM device path", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConnectEndpoint_MissingDevice_TpmExceptionNamingIt()
    {
        var e = await Assert.ThrowsAsync<TpmException>(() => TpmClient.ConnectEndpointAsync("/dev/asterism-no-such-tpm", null, CancellationToken.None));
        Assert.StartsWith("cannot open TPM device /dev/asterism-no-such-tpm: ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConnectEndpoint_MissingSocket_TpmExceptionNamingIt()
    {
        var socket = Path.Combine(Path.GetTempPath(), "asterism-no-such-" + Guid.NewGuid().ToString("N")[..8] + ".sock");
        var e = await Assert.ThrowsAsync<TpmException>(() => TpmClient.ConnectEndpointAsync("unix:" + socket, null, CancellationToken.None));
        Assert.Contains(socket, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ConnectEndpoint_SwtpmSocket_Answers(bool prefixed)
    {
        await using var swtpm = await TestSwtpm.StartAsync();
        var endpoint = (prefixed ? "unix:" : "") + swtpm.Process.SocketPath;

        await using var client = await TpmClient.ConnectEndpointAsync(endpoint, null, CancellationToken.None);

        Assert.Equal(16, (await client.GetRandomAsync(16, CancellationToken.None)).Length);
    }
}
