using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Etcdserverpb;

namespace Asterism.ControlPlane.Tests;

/// <summary>A local process that can reach etcd's ports but holds no certificate of the cluster CA must get nothing.</summary>
public sealed class AttackTests
{
    private static Task<RangeResponse> ReadNodesAsync(EtcdConnection connection) =>
        connection.CallAsync((c, d, ct) => c.GetAsync(new RangeRequest
        {
            Key = Google.Protobuf.ByteString.CopyFromUtf8("/asterism/nodes/"),
            RangeEnd = Google.Protobuf.ByteString.CopyFromUtf8("/asterism/nodes0"),
        }, deadline: d, cancellationToken: ct), CancellationToken.None);

    /// <summary>The call died in the connection (TLS), not in etcd: no request reached the key-value store.</summary>
    private static void AssertRefusedInTransport(ControlPlaneException e)
    {
        var rpc = Assert.IsType<Grpc.Core.RpcException>(e.InnerException);
        Assert.True(EtcdConnection.IsConnectionFailure(rpc), rpc.ToString());
    }

    private static async Task<TestCluster> ClusterWithSecretAsync()
    {
        var cluster = TestCluster.Create();
        await cluster.StartFirstAsync();
        using var connection = cluster.Connect();
        await new NodeRegistry(connection).RegisterAsync(new NodeRecord("worker-0", NodeRole.Worker, Guid.NewGuid(), [1, 2, 3], DateTimeOffset.UnixEpoch));
        // The control: the cluster's own client certificate reads it.
        Assert.Single((await ReadNodesAsync(connection)).Kvs);
        return cluster;
    }

    [Fact]
    public async Task Call_NoClientCertificate_Refused()
    {
        await using var cluster = await ClusterWithSecretAsync();
        using var ca = cluster.ClientTls.LoadCa();
        using var attacker = new EtcdConnection(cluster.ClientUrls, null, ca, TimeSpan.FromSeconds(5));
        var e = await Assert.ThrowsAsync<ControlPlaneException>(() => ReadNodesAsync(attacker));
        AssertRefusedInTransport(e);
    }

    [Fact]
    public async Task Call_ClientCertificateOfAnotherCa_Refused()
    {
        await using var cluster = await ClusterWithSecretAsync();
        var other = Path.Combine(cluster.Root, "other");
        using var foreignCa = ClusterCa.Create(Path.Combine(other, "ca"), "foreign");
        // Same subject as the real admin: only the issuer differs.
        var foreign = foreignCa.IssueClient(Path.Combine(other, "client"), "admin");
        using var certificate = foreign.LoadCertificate();
        using var ca = cluster.ClientTls.LoadCa();
        using var attacker = new EtcdConnection(cluster.ClientUrls, certificate, ca, TimeSpan.FromSeconds(5));
        var e = await Assert.ThrowsAsync<ControlPlaneException>(() => ReadNodesAsync(attacker));
        AssertRefusedInTransport(e);

        // etcdctl with the foreign certificate is refused too.
        var (code, output) = await cluster.EtcdctlAsync("--cert", foreign.CertificatePath, "--key", foreign.KeyPath, "--dial-timeout", "3s", "--command-timeout", "3s", "get", "--prefix", "/asterism/nodes/");
        Assert.NotEqual(0, code);
        Assert.DoesNotContain("worker-0", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Call_ServerOfAnotherCa_ClientRefusesIt()
    {
        await using var cluster = await ClusterWithSecretAsync();
        // The client trusts a different CA: the real server (an impostor, from its point of view) must not be accepted.
        var other = Path.Combine(cluster.Root, "other");
        using var foreignCa = ClusterCa.Create(Path.Combine(other, "ca"), "foreign");
        using var certificate = cluster.ClientTls.LoadCertificate();
        using var connection = new EtcdConnection(cluster.ClientUrls, certificate, foreignCa.Certificate, TimeSpan.FromSeconds(5));
        var e = await Assert.ThrowsAsync<ControlPlaneException>(() => ReadNodesAsync(connection));
        AssertRefusedInTransport(e);
        Assert.Contains("RemoteCertificateValidationCallback", ((Grpc.Core.RpcException)e.InnerException!).Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Peer_MemberCertificateOfAnotherCa_CannotJoin()
    {
        await using var cluster = await ClusterWithSecretAsync();
        using var connection = cluster.Connect();
        var membership = new EtcdMembership(connection);
        var options = cluster.Options(1);
        var added = await membership.AddAsync(options.Name, options.PeerUrl);
        // The would-be member got its certificate from another CA: the cluster's peers refuse it, it never becomes healthy.
        var other = Path.Combine(cluster.Root, "other");
        using var foreignCa = ClusterCa.Create(Path.Combine(other, "ca"), "foreign");
        var foreignTls = foreignCa.IssueMember(Path.Combine(other, "tls"), options.Name, options.Address);
        var impostor = new EtcdMemberOptions
        {
            Name = options.Name,
            Address = options.Address,
            DataDirectory = options.DataDirectory,
            Tls = foreignTls,
            State = ClusterState.Existing,
            InitialCluster = added.InitialCluster,
            IsLearner = true,
            StartTimeout = TimeSpan.FromSeconds(5),
            ClusterToken = options.ClusterToken,
        };
        var e = await Assert.ThrowsAsync<ControlPlaneException>(() => EtcdMember.StartAsync(impostor));
        Assert.Equal(ControlPlaneError.StartFailed, e.Error);
    }

    [Fact]
    public async Task Call_AdminCredentialOfTheClusterCa_RefusedByEtcd()
    {
        await using var cluster = await ClusterWithSecretAsync();
        // The admin credential init issues (O=asterism-admins, signed by the cluster CA), key and all, as the operator
        // holds it: it must not reach the registry or the audit log except through the cluster API.
        using var adminKey = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var csr = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=admin", adminKey, System.Security.Cryptography.HashAlgorithmName.SHA256).CreateSigningRequest();
        using var issued = cluster.Ca.IssueAdmin(csr, "admin");
        using var withKey = issued.CopyWithPrivateKey(adminKey);
        using var admin = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
        using var ca = cluster.ClientTls.LoadCa();
        using var attacker = new EtcdConnection(cluster.ClientUrls, admin, ca, TimeSpan.FromSeconds(5));
        var e = await Assert.ThrowsAsync<ControlPlaneException>(() => ReadNodesAsync(attacker));
        AssertRefusedInTransport(e);

        // etcdctl with the admin's files, and with any other client certificate the cluster CA signs, is refused too.
        var dir = Path.Combine(cluster.Root, "admin");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "admin.crt"), issued.ExportCertificatePem());
        File.WriteAllText(Path.Combine(dir, "admin.key"), adminKey.ExportPkcs8PrivateKeyPem());
        var other = cluster.Ca.IssueClient(Path.Combine(cluster.Root, "cluster-ca-client"), "cp0");
        foreach (var (cert, key) in new[] { (Path.Combine(dir, "admin.crt"), Path.Combine(dir, "admin.key")), (other.CertificatePath, other.KeyPath) })
        {
            var (code, output) = await cluster.EtcdctlAsync("--cert", cert, "--key", key, "--dial-timeout", "3s", "--command-timeout", "3s", "get", "--prefix", "/asterism/nodes/");
            Assert.NotEqual(0, code);
            Assert.DoesNotContain("worker-0", output, StringComparison.Ordinal);
        }
        // The control: the node's own client certificate (the etcd CA's) is served.
        var (ownCode, ownOutput) = await cluster.EtcdctlAsync("get", "--prefix", "--keys-only", "/asterism/nodes/");
        Assert.True(ownCode == 0 && ownOutput.Contains("worker-0", StringComparison.Ordinal), ownOutput);
    }

    [Fact]
    public async Task Call_ForgedCertificateUnderTheEtcdCaName_Refused()
    {
        await using var cluster = await ClusterWithSecretAsync();
        // The etcd CA's subject and key identifier are public (anyone holding ca.crt can derive them: same key). An
        // attacker makes its own CA under exactly that subject and key identifier, with its own key, and issues a
        // client certificate whose issuer name and authority key identifier both match the real etcd CA. Only the
        // signature differs: the verifier must check it with the trusted certificate's key, not take the names.
        var real = cluster.EtcdCa.Certificate;
        var realSkid = real.Extensions.OfType<X509SubjectKeyIdentifierExtension>().Single();
        using var fakeKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var fakeRequest = new CertificateRequest(real.SubjectName, fakeKey, HashAlgorithmName.SHA256);
        fakeRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        fakeRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        fakeRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(realSkid.RawData, false));
        using var fakeCa = fakeRequest.CreateSelfSigned(real.NotBefore, real.NotAfter);
        Assert.Equal(real.SubjectName.RawData, fakeCa.SubjectName.RawData);

        using var leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leafRequest = new CertificateRequest("CN=cp0", leafKey, HashAlgorithmName.SHA256);
        leafRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        leafRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        leafRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(new OidCollection { new Oid(ClusterApiTls.ClientAuthOid) }, false));
        leafRequest.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(real, true, false));
        using var leaf = leafRequest.Create(fakeCa, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddDays(1), [1, 2, 3, 4]);
        Assert.Equal(real.SubjectName.RawData, leaf.IssuerName.RawData);

        // Through our client (leaf alone) ...
        using var withKey = leaf.CopyWithPrivateKey(leafKey);
        using var forged = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
        using var ca = cluster.ClientTls.LoadCa();
        using var attacker = new EtcdConnection(cluster.ClientUrls, forged, ca, TimeSpan.FromSeconds(5));
        var e = await Assert.ThrowsAsync<ControlPlaneException>(() => ReadNodesAsync(attacker));
        AssertRefusedInTransport(e);

        // ... and through etcdctl, the forged CA sent along as an intermediate (Go builds the chain from what the
        // client presents, so a name-only match would have to happen here).
        var dir = Path.Combine(cluster.Root, "forged");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "client.crt"), leaf.ExportCertificatePem() + "\n" + fakeCa.ExportCertificatePem() + "\n");
        File.WriteAllText(Path.Combine(dir, "client.key"), leafKey.ExportPkcs8PrivateKeyPem());
        var (code, output) = await cluster.EtcdctlAsync("--cert", Path.Combine(dir, "client.crt"), "--key", Path.Combine(dir, "client.key"),
            "--dial-timeout", "3s", "--command-timeout", "3s", "get", "--prefix", "/asterism/nodes/");
        Assert.NotEqual(0, code);
        Assert.DoesNotContain("worker-0", output, StringComparison.Ordinal);
        // Refused in the handshake, not a file etcdctl could not parse.
        Assert.Contains("TransientFailure", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Call_AdminCredentialWithTheClusterCaAsIntermediate_RefusedByEtcd()
    {
        await using var cluster = await ClusterWithSecretAsync();
        // The admin presents its certificate followed by the cluster CA certificate (same key as the etcd CA): a
        // verifier that matched by key or key identifier instead of issuer name would accept this chain.
        using var adminKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = new CertificateRequest("CN=admin", adminKey, HashAlgorithmName.SHA256).CreateSigningRequest();
        using var issued = cluster.Ca.IssueAdmin(csr, "admin");
        var dir = Path.Combine(cluster.Root, "admin-chain");
        Directory.CreateDirectory(dir);
        foreach (var (name, intermediate) in new[] { ("cluster", cluster.Ca.Certificate), ("etcd", cluster.EtcdCa.Certificate) })
        {
            File.WriteAllText(Path.Combine(dir, name + ".crt"), issued.ExportCertificatePem() + "\n" + intermediate.ExportCertificatePem() + "\n");
        }
        File.WriteAllText(Path.Combine(dir, "admin.key"), adminKey.ExportPkcs8PrivateKeyPem());
        foreach (var name in new[] { "cluster", "etcd" })
        {
            var (code, output) = await cluster.EtcdctlAsync("--cert", Path.Combine(dir, name + ".crt"), "--key", Path.Combine(dir, "admin.key"),
                "--dial-timeout", "3s", "--command-timeout", "3s", "get", "--prefix", "/asterism/nodes/");
            Assert.NotEqual(0, code);
            Assert.DoesNotContain("worker-0", output, StringComparison.Ordinal);
            Assert.Contains("TransientFailure", output, StringComparison.Ordinal);
        }
    }

    /// <summary>GET on a member's peer port (where /members and the raft streams are served), as the attacker dials it.</summary>
    private static async Task<System.Net.HttpStatusCode> PeerGetAsync(Uri peerUrl, string path, X509Certificate2? clientCertificate)
    {
        using var handler = new SocketsHttpHandler
        {
            SslOptions =
            {
                // The attacker does not care who the server is; only whether it answers.
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
                ClientCertificates = clientCertificate is null ? null : new X509CertificateCollection { clientCertificate },
            },
            ConnectTimeout = TimeSpan.FromSeconds(5),
        };
        using var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
        using var response = await http.GetAsync(new Uri(peerUrl, path));
        return response.StatusCode;
    }

    [Fact]
    public async Task Peer_NoOrForeignClientCertificate_RefusedInTheHandshake()
    {
        await using var cluster = await ClusterWithSecretAsync();
        var peer = cluster.Options(0).PeerUrl;
        // The control: the member's own certificate (cluster CA) is served the peer API.
        using (var member = cluster.Options(0).Tls.LoadCertificate())
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, await PeerGetAsync(peer, "/members", member));
        }

        var other = Path.Combine(cluster.Root, "other");
        using var foreignCa = ClusterCa.Create(Path.Combine(other, "ca"), "foreign");
        using var foreign = foreignCa.IssueMember(Path.Combine(other, "tls"), "cp0", cluster.Address(0)).LoadCertificate();
        foreach (var certificate in new[] { null, foreign })
        {
            foreach (var path in new[] { "/members", "/version", "/raft/stream/msgappv2/cp0" })
            {
                await Assert.ThrowsAsync<HttpRequestException>(() => PeerGetAsync(peer, path, certificate));
            }
        }
    }

    [Fact]
    public async Task DataAndTlsFiles_RunningMember_NothingReadableByOthers()
    {
        await using var cluster = await ClusterWithSecretAsync();
        var options = cluster.Options(0);
        // Everything the CAs, the member and etcd wrote: the cluster CA, its etcd twin (etcd-ca.crt) and its copies.
        var paths = Directory.EnumerateFileSystemEntries(cluster.Root, "*", SearchOption.AllDirectories).Append(cluster.Root).ToList();
        Assert.Contains(paths, p => p.EndsWith(".wal", StringComparison.Ordinal));
        // cp0 (the parent of the member's tls and data directories) was made by EnsurePrivateDirectory as a missing ancestor.
        Assert.Contains(Path.GetDirectoryName(options.DataDirectory)!, paths);
        Assert.Contains(Path.Combine(cluster.Ca.Directory, ClusterCa.EtcdCertificateFile), paths);
        Assert.Contains(options.Tls.KeyPath, paths);
        Assert.Contains(Path.Combine(cluster.Ca.Directory, ClusterCa.KeyFile), paths);
        const UnixFileMode others = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
            | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;
        Assert.All(paths, p => Assert.True((File.GetUnixFileMode(p) & others) == 0, $"{p} is {File.GetUnixFileMode(p)}"));
    }
}
