using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using Asterism.Atls.Tests.Probe;
using Asterism.Tests;
using Grpc.Net.Client;

namespace Asterism.Atls.Tests;

/// <summary>
/// The TLS transport under <c>UseAtlsServer</c> (OpenSSL over memory BIOs): data integrity under concurrent HTTP/2
/// streams, and the handshakes it must refuse or give up on.
/// </summary>
public sealed class ServerTransportTests : IDisposable
{
    private readonly Node _node = new();
    private readonly CollectingLoggerProvider _serverLogs = new();
    private readonly CollectingLoggerProvider _clientLogs = new();

    public void Dispose() => _node.Dispose();

    private Task<ProbeServer> StartAsync(TimeSpan? handshakeTimeout = null) =>
        ProbeServer.StartAsync(l => l.UseAtlsServer(_node.Issuer(), o =>
        {
            o.LoggerFactory = _serverLogs.Factory();
            o.HandshakeTimeout = handshakeTimeout ?? o.HandshakeTimeout;
        }), _serverLogs);

    [Fact]
    public async Task Ping_ConcurrentLargeMessagesOnOneConnection_EchoedIntact()
    {
        await using var server = await StartAsync();
        using var channel = GrpcChannel.ForAddress(server.Address, new GrpcChannelOptions
        {
            HttpHandler = AtlsClient.CreateHandler(_node.Validator(_clientLogs)),
        });
        var client = new Prober.ProberClient(channel);
        var texts = Enumerable.Range(0, 24).Select(i => Convert.ToBase64String(RandomNumberGenerator.GetBytes(i == 0 ? 2_000_000 : 1000 + (i * 9000)))).ToList();

        // The deadline only turns a flow-control deadlock into a failure instead of a hung run: ~5 MB on one
        // connection took 6-15 s at load average 50 and over 30 s inside the full suite at load 100.
        var replies = await Task.WhenAll(texts.Select(t => client.PingAsync(new PingRequest { Text = t }, deadline: DateTime.UtcNow.AddSeconds(120)).ResponseAsync));

        Assert.Equal(texts, replies.Select(r => r.Text));
        Assert.Equal(texts.Count, server.Counter.Calls);
    }

    [Fact]
    public async Task Ping_ServiceSeesTlsHandshakeFeature()
    {
        await using var server = await StartAsync();

        var reply = await server.PingAsync(AtlsClient.CreateHandler(_node.Validator(_clientLogs)));

        Assert.Matches(@"^Tls13 TLS_(AES_128_GCM_SHA256|AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256) [0-9a-f]{32}\.[0-9a-f]{32}\.atls$", reply.Tls);
    }

    [Fact]
    public async Task Ping_ServerStopsGracefullyDuringCall_ResponseStillArrives()
    {
        for (var i = 0; i < 10; i++)
        {
            await using var server = await StartAsync();
            Task? stopping = null;
            server.Counter.OnCall = () => stopping = Task.Run(server.StopAsync);

            var reply = await server.PingAsync(AtlsClient.CreateHandler(_node.Validator(_clientLogs)), $"last words {i}");

            Assert.Equal($"last words {i}", reply.Text);
            await stopping!;
        }
    }

    [Fact]
    public async Task Exchange_ServerStopsAsSoonAsItHasTheSecondMessage_StatusOkArrives()
    {
        for (var i = 0; i < 30; i++)
        {
            await using var server = await StartAsync();
            Task? stopping = null;
            server.Counter.OnCall = () => stopping = Task.Run(server.StopAsync);
            using var channel = GrpcChannel.ForAddress(server.Address, new GrpcChannelOptions { HttpHandler = AtlsClient.CreateHandler(_node.Validator(_clientLogs)) });
            using var call = new Prober.ProberClient(channel).Exchange();

            await call.RequestStream.WriteAsync(new PingRequest { Text = "secret" });
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            await call.RequestStream.WriteAsync(new PingRequest { Text = "key" });
            await call.RequestStream.CompleteAsync();
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
            }

            Assert.Equal(Grpc.Core.StatusCode.OK, call.GetStatus().StatusCode);
            await stopping!;
        }
    }

    [Fact]
    public async Task Handshake_ClientOffersOnlyHttp11_RefusedWithAlert()
    {
        await using var server = await StartAsync();

        var e = await Assert.ThrowsAsync<AuthenticationException>(() => HandshakeAsync(server.Port, SslProtocols.Tls13, [SslApplicationProtocol.Http11]));

        Assert.Contains("no application protocol", e.ToString(), StringComparison.OrdinalIgnoreCase);
        Assert.Equal(0, server.Counter.Calls);
    }

    [Fact]
    public async Task Handshake_ClientWithoutAlpn_RefusedBeforeAttesting()
    {
        var issued = 0;
        var issuer = _node.Issuer();
        var counting = new FuncIssuer(issuer.Variant, (userData, nonce) =>
        {
            Interlocked.Increment(ref issued);
            return issuer.Issue(userData, nonce);
        });
        await using var server = await ProbeServer.StartAsync(l => l.UseAtlsServer(counting, o => o.LoggerFactory = _serverLogs.Factory()), _serverLogs);

        var e = await Assert.ThrowsAsync<AuthenticationException>(() => HandshakeAsync(server.Port, SslProtocols.Tls13, alpn: null));

        Assert.Contains("no application protocol", e.ToString(), StringComparison.OrdinalIgnoreCase);
        Assert.Equal(0, issued);
        Assert.Equal(0, server.Counter.Calls);
        Assert.True(await EventuallyAsync(() => _serverLogs.Contains("TLS handshake failed")), _serverLogs.Dump());
    }

    [Fact]
    public async Task Handshake_Tls12OnlyClient_Refused()
    {
        await using var server = await StartAsync();

        await Assert.ThrowsAnyAsync<Exception>(() => HandshakeAsync(server.Port, SslProtocols.Tls12, [SslApplicationProtocol.Http2]));

        Assert.Equal(0, server.Counter.Calls);
        Assert.True(await EventuallyAsync(() => _serverLogs.Contains("TLS handshake failed")), _serverLogs.Dump());
    }

    [Fact]
    public async Task Handshake_NonceAndHttp2_Completes()
    {
        await using var server = await StartAsync();

        await using var ssl = await HandshakeAsync(server.Port, SslProtocols.Tls13, [SslApplicationProtocol.Http2]);

        Assert.Equal(SslProtocols.Tls13, ssl.SslProtocol);
        Assert.Equal(SslApplicationProtocol.Http2, ssl.NegotiatedApplicationProtocol);
    }

    [Fact]
    public async Task Handshake_SilentClient_ClosedAfterTimeout()
    {
        await using var server = await StartAsync(TimeSpan.FromMilliseconds(300));
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, server.Port);

        var read = await tcp.GetStream().ReadAsync(new byte[16]).AsTask().WaitAsync(Poll.Hang);

        Assert.Equal(0, read);
        Assert.True(await EventuallyAsync(() => _serverLogs.Contains("TLS handshake failed") && _serverLogs.Contains("timed out after 0.3 s")), _serverLogs.Dump());
    }

    [Fact]
    public async Task Handshake_GarbageBytes_ClosedAndLogged()
    {
        await using var server = await StartAsync();
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, server.Port);
        var stream = tcp.GetStream();

        await stream.WriteAsync(RandomNumberGenerator.GetBytes(4096));
        var buffer = new byte[64];
        int read;
        do
        {
            read = await ReadOrResetAsync(stream, buffer).WaitAsync(Poll.Hang);
        }
        while (read > 0);

        Assert.Equal(0, server.Counter.Calls);
        Assert.True(await EventuallyAsync(() => _serverLogs.Contains("TLS handshake failed")), _serverLogs.Dump());
    }

    private static async Task<int> ReadOrResetAsync(Stream stream, byte[] buffer)
    {
        try
        {
            return await stream.ReadAsync(buffer);
        }
        catch (IOException)
        {
            return 0;
        }
    }

    private static async Task<SslStream> HandshakeAsync(int port, SslProtocols protocols, List<SslApplicationProtocol>? alpn)
    {
        var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port);
        var ssl = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false);
        try
        {
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = AtlsNonce.ToServerName(AtlsNonce.Create()),
                EnabledSslProtocols = protocols,
                ApplicationProtocols = alpn,
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
            });
            return ssl;
        }
        catch
        {
            await ssl.DisposeAsync();
            tcp.Dispose();
            throw;
        }
    }

    private static Task<bool> EventuallyAsync(Func<bool> condition) => Poll.UntilAsync(condition, Poll.Hang, TimeSpan.FromMilliseconds(50));
}
