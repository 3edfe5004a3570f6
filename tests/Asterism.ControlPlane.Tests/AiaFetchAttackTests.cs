using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Asterism.ControlPlane.Tests;

/// <summary>
/// An impostor on an etcd client port serves a certificate whose issuer it does not send, with an Authority Information
/// Access (AIA) address where "the issuer can be downloaded". A chain builder that follows it dials wherever the
/// attacker points — off loopback on a real deployment. The client must refuse the certificate without dialling.
/// Here the AIA address is a loopback listener that counts connections.
/// </summary>
public sealed class AiaFetchAttackTests
{
    [Fact]
    public async Task Call_ImpostorCertificateWithAiaAddress_RefusedWithoutFetchingTheIssuer()
    {
        var root = Path.Combine(Path.GetTempPath(), "asterism-aia-" + Guid.NewGuid().ToString("N")[..8]);
        using var clusterCa = ClusterCa.Create(Path.Combine(root, "ca"), "cluster");
        using var ownClient = clusterCa.IssueClient(Path.Combine(root, "client"), "admin").LoadCertificate();
        try
        {
            using var fetches = new TcpListener(IPAddress.Loopback, 0);
            fetches.Start();
            var fetchPort = ((IPEndPoint)fetches.LocalEndpoint).Port;
            var fetched = 0;
            _ = Task.Run(async () =>
            {
                while (true)
                {
                    using var c = await fetches.AcceptTcpClientAsync();
                    Interlocked.Increment(ref fetched);
                }
            });

            using var impostor = ImpostorCertificate($"http://127.0.0.1:{fetchPort}/issuer.crt");
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            _ = Task.Run(async () =>
            {
                while (true)
                {
                    var tcp = await listener.AcceptTcpClientAsync();
                    _ = Task.Run(async () =>
                    {
                        using (tcp)
                        using (var tls = new SslStream(tcp.GetStream()))
                        {
                            try
                            {
                                await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                                {
                                    // offline: the impostor itself must not fetch its issuer, or the count below would be its own.
                                    ServerCertificateContext = SslStreamCertificateContext.Create(impostor, additionalCertificates: null, offline: true),
                                    ApplicationProtocols = [SslApplicationProtocol.Http2],
                                });
                                _ = await tls.ReadAtLeastAsync(new byte[1], 1, throwOnEndOfStream: false);
                            }
                            catch (Exception e) when (e is IOException or AuthenticationException or ObjectDisposedException)
                            {
                            }
                        }
                    });
                }
            });

            using var connection = new EtcdConnection([new Uri($"https://127.0.0.1:{port}")], ownClient, clusterCa.Certificate, TimeSpan.FromSeconds(20));
            var e = await Assert.ThrowsAsync<ControlPlaneException>(() => connection.CallAsync(
                (c, d, ct) => c.GetAsync(new Etcdserverpb.RangeRequest { Key = Google.Protobuf.ByteString.CopyFromUtf8("/x") }, deadline: d, cancellationToken: ct),
                CancellationToken.None));
            Assert.Contains("RemoteCertificateValidationCallback", ((Grpc.Core.RpcException)e.InnerException!).Status.Detail, StringComparison.Ordinal);
            Assert.Equal(0, Volatile.Read(ref fetched));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>A leaf for 127.0.0.1 issued by an intermediate that is never sent, with an AIA caIssuers address.</summary>
    private static X509Certificate2 ImpostorCertificate(string aiaUrl)
    {
        using var rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var rootRequest = new CertificateRequest("CN=impostor root", rootKey, HashAlgorithmName.SHA256);
        rootRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var rootCertificate = rootRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        using var intermediateKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var intermediateRequest = new CertificateRequest("CN=impostor intermediate", intermediateKey, HashAlgorithmName.SHA256);
        intermediateRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var intermediate = intermediateRequest.Create(rootCertificate, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1), [1]);
        using var intermediateWithKey = intermediate.CopyWithPrivateKey(intermediateKey);
        using var leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leafRequest = new CertificateRequest("CN=127.0.0.1", leafKey, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        leafRequest.CertificateExtensions.Add(san.Build());
        leafRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(ClusterApiTls.ServerAuthOid)], false));
        leafRequest.CertificateExtensions.Add(new X509AuthorityInformationAccessExtension(null, [aiaUrl]));
        using var leaf = leafRequest.Create(intermediateWithKey, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1), [2]);
        using var leafWithKey = leaf.CopyWithPrivateKey(leafKey);
        // A PKCS#12 round trip: SslStream on Linux wants a certificate whose key it can hand to OpenSSL.
        return X509CertificateLoader.LoadPkcs12(leafWithKey.Export(X509ContentType.Pkcs12), null);
    }
}
