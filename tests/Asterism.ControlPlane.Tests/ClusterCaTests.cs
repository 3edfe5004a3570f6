using System.Net;
using System.Security.Cryptography.X509Certificates;

namespace Asterism.ControlPlane.Tests;

public sealed class ClusterCaTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("asterism-ca-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void Create_NewCa_KeyAndCertificates0600InA0700Directory()
    {
        var dir = Path.Combine(_root, "ca");
        using var ca = ClusterCa.Create(dir, "demo");
        var member = ca.IssueMember(Path.Combine(_root, "member"), "control-plane-0", IPAddress.Parse("127.77.0.1"));
        var client = ca.IssueClient(Path.Combine(_root, "member"), "admin");
        Assert.Equal(SecureFiles.DirectoryMode, File.GetUnixFileMode(dir));
        Assert.Equal(SecureFiles.DirectoryMode, File.GetUnixFileMode(Path.Combine(_root, "member")));
        foreach (var file in new[] { Path.Combine(dir, "ca.key"), Path.Combine(dir, "ca.crt"), member.KeyPath, member.CertificatePath, member.CaPath, client.KeyPath })
        {
            Assert.Equal(SecureFiles.PrivateFileMode, File.GetUnixFileMode(file));
        }
        Assert.Contains("BEGIN PRIVATE KEY", File.ReadAllText(Path.Combine(dir, "ca.key")), StringComparison.Ordinal);
    }

    [Fact]
    public void IssueMember_Certificate_ChainsToCaNamesAddressAndServesBothSides()
    {
        using var ca = ClusterCa.Create(Path.Combine(_root, "ca"), "demo");
        var files = ca.IssueMember(Path.Combine(_root, "member"), "control-plane-0", IPAddress.Parse("127.77.0.1"));
        using var leaf = X509Certificate2.CreateFromPem(File.ReadAllText(files.CertificatePath));
        Assert.True(leaf.MatchesHostname("127.77.0.1"));
        Assert.False(leaf.MatchesHostname("127.77.0.2"));
        var usages = leaf.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single().EnhancedKeyUsages.Cast<System.Security.Cryptography.Oid>().Select(o => o.Value);
        Assert.Equal(["1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.1"], usages);
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca.Certificate);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        Assert.True(chain.Build(leaf));
        using var key = leaf.GetECDsaPublicKey();
        Assert.Equal(256, key!.KeySize);
    }

    [Fact]
    public void ForEtcd_CopiesOnTwoControlPlanes_InteroperateButClusterCaLeavesDoNotChain()
    {
        using var ca = ClusterCa.Create(Path.Combine(_root, "ca"), "demo");
        // A joined control plane holds only ca.key + ca.crt from its ticket and makes its own etcd-ca.crt.
        var joined = Path.Combine(_root, "joined");
        Directory.CreateDirectory(joined);
        foreach (var file in new[] { ClusterCa.KeyFile, ClusterCa.CertificateFile })
        {
            File.Copy(Path.Combine(ca.Directory, file), Path.Combine(joined, file));
        }
        using var joinedCa = ClusterCa.Load(joined);
        using var etcd = ca.ForEtcd();
        using var joinedEtcd = joinedCa.ForEtcd();
        using var member = joinedEtcd.IssueMember(Path.Combine(_root, "m"), "cp1", IPAddress.Parse("127.77.0.2")).LoadCertificate();
        using var clusterLeaf = ca.IssueMember(Path.Combine(_root, "api"), "cp0", IPAddress.Parse("127.77.0.1")).LoadCertificate();

        Assert.True(ClusterApiTls.ChainsTo(member, etcd.Certificate, ClusterApiTls.ServerAuthOid));
        Assert.False(ClusterApiTls.ChainsTo(clusterLeaf, etcd.Certificate, ClusterApiTls.ClientAuthOid));
        Assert.False(ClusterApiTls.ChainsTo(member, ca.Certificate, ClusterApiTls.ClientAuthOid));
        Assert.NotEqual(ca.Certificate.SubjectName.Name, etcd.Certificate.SubjectName.Name);
        Assert.Equal(etcd.Certificate.SubjectName.Name, joinedEtcd.Certificate.SubjectName.Name);
        Assert.Throws<InvalidOperationException>(() => etcd.IssueAdmin([1], "admin"));
    }

    [Fact]
    public void IssueMember_NonLoopbackAddress_Refused()
    {
        using var ca = ClusterCa.Create(Path.Combine(_root, "ca"), "demo");
        var e = Assert.Throws<ControlPlaneException>(() => ca.IssueMember(Path.Combine(_root, "member"), "cp0", IPAddress.Parse("10.0.0.1")));
        Assert.Equal(ControlPlaneError.InvalidRequest, e.Error);
    }

    [Fact]
    public void Load_KeyReadableByOthers_Refused()
    {
        var dir = Path.Combine(_root, "ca");
        ClusterCa.Create(dir, "demo").Dispose();
        using (var again = ClusterCa.Load(dir))
        {
            Assert.StartsWith("CN=asterism cluster CA demo", again.Certificate.Subject, StringComparison.Ordinal);
        }
        File.SetUnixFileMode(Path.Combine(dir, "ca.key"), SecureFiles.PrivateFileMode | UnixFileMode.OtherRead);
        var e = Assert.Throws<ControlPlaneException>(() => ClusterCa.Load(dir));
        Assert.Equal(ControlPlaneError.Files, e.Error);
        Assert.EndsWith("ca.key is readable by others; expected mode 0600", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Create_CaAlreadyThere_RefusedKeyUnchanged()
    {
        var dir = Path.Combine(_root, "ca");
        ClusterCa.Create(dir, "demo").Dispose();
        var before = File.ReadAllText(Path.Combine(dir, "ca.key"));
        var e = Assert.Throws<ControlPlaneException>(() => ClusterCa.Create(dir, "demo"));
        Assert.Equal(ControlPlaneError.InvalidRequest, e.Error);
        Assert.Equal(before, File.ReadAllText(Path.Combine(dir, "ca.key")));
    }

    [Fact]
    public void Names_Invalid_Refused()
    {
        Assert.True(NodeNames.IsValid("control-plane-0"));
        Assert.False(NodeNames.IsValid(""));
        Assert.False(NodeNames.IsValid("-x"));
        Assert.False(NodeNames.IsValid("a/b"));
        Assert.False(NodeNames.IsValid("Upper"));
        Assert.False(NodeNames.IsValid(new string('a', 64)));
    }

    [Fact]
    public void IssueAdmin_SignedRequest_AdminCertificateForThatKeyOnly()
    {
        using var ca = ClusterCa.Create(Path.Combine(_root, "ca"), "demo");
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        // The request asks for more than it gets: its subject and extensions are ignored.
        var request = new CertificateRequest("CN=root, O=evil", key, System.Security.Cryptography.HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var admin = ca.IssueAdmin(request.CreateSigningRequest(), "admin");
        Assert.True(ClusterApiTls.ChainsTo(admin, ca.Certificate, ClusterApiTls.ClientAuthOid));
        Assert.False(ClusterApiTls.ChainsTo(admin, ca.Certificate, ClusterApiTls.ServerAuthOid));
        Assert.True(ClusterApiTls.IsAdmin(admin));
        Assert.Equal("O=asterism-admins, CN=admin", admin.Subject);
        Assert.False(Assert.Single(admin.Extensions.OfType<X509BasicConstraintsExtension>()).CertificateAuthority);
        using var certified = admin.GetECDsaPublicKey()!;
        Assert.Equal(key.ExportSubjectPublicKeyInfo(), certified.ExportSubjectPublicKeyInfo());
        Assert.False(admin.HasPrivateKey);
    }

    [Fact]
    public void IssueAdmin_BadRequests_Refused()
    {
        using var ca = ClusterCa.Create(Path.Combine(_root, "ca"), "demo");
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var good = new CertificateRequest("CN=admin", key, System.Security.Cryptography.HashAlgorithmName.SHA256).CreateSigningRequest();
        var forged = (byte[])good.Clone();
        forged[^5] ^= 1; // the self-signature no longer verifies: whoever sent it does not prove the key
        using var rsa = System.Security.Cryptography.RSA.Create(2048);
        var wrongKey = new CertificateRequest("CN=admin", rsa, System.Security.Cryptography.HashAlgorithmName.SHA256, System.Security.Cryptography.RSASignaturePadding.Pkcs1).CreateSigningRequest();
        foreach (var bad in new[] { forged, wrongKey, [], new byte[ClusterCa.MaxSigningRequestBytes + 1], [.. good, 0] })
        {
            var e = Assert.Throws<ControlPlaneException>(() => ca.IssueAdmin(bad, "admin"));
            Assert.Equal(ControlPlaneError.InvalidRequest, e.Error);
        }
    }

    [Fact]
    public void IsAdmin_NodeClientCertificate_False()
    {
        using var ca = ClusterCa.Create(Path.Combine(_root, "ca"), "demo");
        using var node = ca.IssueClient(Path.Combine(_root, "client"), "control-plane-1").LoadCertificate();
        Assert.True(ClusterApiTls.ChainsTo(node, ca.Certificate, ClusterApiTls.ClientAuthOid));
        Assert.False(ClusterApiTls.IsAdmin(node));
    }
}
