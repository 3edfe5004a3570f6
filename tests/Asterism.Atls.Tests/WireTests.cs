using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using Asterism.Attestation;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace Asterism.Atls.Tests;

/// <summary>What actually crosses the wire: the SNI as sent by .NET, and handshake timeouts.</summary>
public sealed class WireTests
{
    [Fact]
    public async Task ServerName_NonceEncoding_ArrivesUnchangedAtKestrel()
    {
        var seen = new List<string?>();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var certificate = AtlsCertificate.Build(key, null, null, DateTimeOffset.UtcNow);
        await using var server = await ProbeServer.StartAsync(l => l.UseHttps(new TlsHandshakeCallbackOptions
        {
            OnConnection = context =>
            {
                lock (seen)
                {
                    seen.Add(context.ClientHelloInfo.ServerName);
                }
                return ValueTask.FromResult(new SslServerAuthenticationOptions { ServerCertificate = certificate });
            },
        }), new CollectingLoggerProvider());

        var names = new List<string?>();
        for (var i = 0; i < 3; i++)
        {
            var name = AtlsNonce.ToServerName(AtlsNonce.Create());
            names.Add(name);
            using var tcp = new TcpClient();
            await tcp.ConnectAsync(IPAddress.Loopback, server.Port);
            await using var ssl = new SslStream(tcp.GetStream());
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = name,
                EnabledSslProtocols = SslProtocols.Tls13,
                ApplicationProtocols = [SslApplicationProtocol.Http2],
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
            });
        }

        Assert.Equal(names, seen);
        Assert.All(seen, s => Assert.True(AtlsNonce.TryParseServerName(s, out _)));
    }

    [Fact]
    public async Task CreateHandler_ServerNeverAnswers_TimesOut()
    {
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var port = ((IPEndPoint)silent.LocalEndpoint).Port;
        var logs = new CollectingLoggerProvider();
        var options = new AtlsClientOptions { HandshakeTimeout = TimeSpan.FromMilliseconds(300), LoggerFactory = logs.Factory() };
        using var node = new Node();
        using var client = new HttpClient(AtlsClient.CreateHandler(node.Validator(logs), options))
        {
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };

        var e = await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync($"https://127.0.0.1:{port}/"));

        Assert.Equal(AttestationFailure.Timeout, AtlsRefusedException.FindIn(e)?.Failure);
        Assert.True(logs.Contains("timed out"), logs.Dump());
    }
}
