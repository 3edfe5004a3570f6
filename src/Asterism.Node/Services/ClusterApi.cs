using System.Net;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Asterism.ControlPlane;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace Asterism.Node.Services;

/// <summary>
/// The cluster API's TLS on control planes (port 6443): a server certificate issued by the cluster CA, a client
/// certificate required and accepted only when it chains to the cluster CA (the machine store plays no part); the
/// admin role is checked per call by <see cref="ClusterApiService"/>. There is no cleartext endpoint.
/// </summary>
public static class ClusterApi
{
    /// <summary>Where init puts the cluster CA on control-plane-0's state filesystem (shared with etcd).</summary>
    public const string CaFolder = "etcd/ca";

    /// <summary>Where each control plane keeps the cluster API's server certificate, re-issued at every boot.</summary>
    public const string TlsFolder = "clusterapi";

    /// <summary>
    /// The cluster CA in STATE/etcd/ca: loaded when it exists, created there otherwise. The etcd wiring creates the CA
    /// at init in the same directory with the same call; this is the one place that does it for the cluster API, so
    /// the two merge into one.
    /// </summary>
    public static ClusterCa LoadOrCreateClusterCa(string stateRoot, string clusterName)
    {
        var directory = Path.Combine(stateRoot, CaFolder);
        return File.Exists(Path.Combine(directory, ClusterCa.KeyFile))
            ? ClusterCa.Load(directory)
            : ClusterCa.Create(directory, clusterName);
    }

    /// <summary>
    /// Issues this node's cluster API server certificate (serverAuth, naming its address) from the CA on its state
    /// filesystem; null when this control plane holds no CA (it then serves no cluster API).
    /// </summary>
    public static (X509Certificate2 Server, X509Certificate2 Ca)? LoadServerCredentials(string stateRoot, string nodeName, IPAddress address)
    {
        var directory = Path.Combine(stateRoot, CaFolder);
        if (!File.Exists(Path.Combine(directory, ClusterCa.KeyFile)))
        {
            return null;
        }
        using var ca = ClusterCa.Load(directory);
        var files = ca.IssueMember(Path.Combine(stateRoot, TlsFolder), nodeName, address);
        return (files.LoadCertificate(), files.LoadCa());
    }

    /// <summary>Mutual TLS on the listener: HTTP/2 only, TLS 1.2/1.3, a client certificate of the cluster CA required.</summary>
    public static void UseMutualTls(ListenOptions listen, X509Certificate2 server, X509Certificate2 ca)
    {
        ArgumentNullException.ThrowIfNull(listen);
        listen.Protocols = HttpProtocols.Http2;
        listen.UseHttps(new HttpsConnectionAdapterOptions
        {
            ServerCertificate = server,
            SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            ClientCertificateMode = ClientCertificateMode.RequireCertificate,
            // Replaces the default check entirely: the chain must end in the cluster CA, whatever the machine trusts.
            ClientCertificateValidation = (certificate, _, _) => ClusterApiTls.ChainsTo(certificate, ca, ClusterApiTls.ClientAuthOid),
            HandshakeTimeout = TimeSpan.FromSeconds(10),
            // SslStream's own chain build of the client's certificate runs first: no issuer download from the address
            // a caller's certificate names (anyone can present one).
            OnAuthenticate = (_, ssl) => ssl.CertificateChainPolicy = ClusterApiTls.NoDownloadsPolicy(),
        });
    }
}
