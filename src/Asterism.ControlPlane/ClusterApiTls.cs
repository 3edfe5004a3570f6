using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Asterism.ControlPlane;

/// <summary>
/// The TLS rules of the cluster API (port 6443), shared by the server (the node) and the client (the CLI): both sides'
/// certificates must chain to the cluster CA alone (the machine's trust store plays no part) and carry the right
/// extended key usage; a client is an admin only when its subject names <see cref="AdminOrganization"/>, which only
/// <see cref="ClusterCa.IssueAdmin"/> writes (node client certificates for etcd carry no organization).
/// </summary>
public static class ClusterApiTls
{
    /// <summary>The subject organization of admin client certificates.</summary>
    public const string AdminOrganization = "asterism-admins";

    /// <summary>id-kp-serverAuth.</summary>
    public const string ServerAuthOid = "1.3.6.1.5.5.7.3.1";

    /// <summary>id-kp-clientAuth.</summary>
    public const string ClientAuthOid = "1.3.6.1.5.5.7.3.2";

    /// <summary>
    /// Whether <paramref name="certificate"/> chains to <paramref name="ca"/> alone, is within its validity, and allows
    /// <paramref name="usageOid"/>. Any extra certificates the peer sent are ignored (no intermediates are issued).
    /// </summary>
    public static bool ChainsTo(X509Certificate? certificate, X509Certificate2 ca, string usageOid)
    {
        ArgumentNullException.ThrowIfNull(ca);
        if (certificate is null)
        {
            return false;
        }
        using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        chain.ChainPolicy.ApplicationPolicy.Add(new Oid(usageOid));
        var ok = chain.Build(leaf);
        foreach (var element in chain.ChainElements)
        {
            element.Certificate.Dispose();
        }
        return ok;
    }

    /// <summary>
    /// The chain policy for every TLS stream that sees a peer's certificate (as <c>CertificateChainPolicy</c>): SslStream
    /// builds a chain before any validation callback runs, and by default it downloads a missing issuer from the
    /// Authority Information Access address in the peer's certificate — an address the peer chooses, off loopback.
    /// Nothing is trusted through this policy (the callbacks decide); it only forbids the downloads. Asterism.Atls's
    /// <c>AtlsChainPolicy.NoDownloads</c> says the same for aTLS streams: neither project references the other (the
    /// ControlPlane library depends on no Asterism project, Atls on Attestation), and a new reference for two
    /// properties would couple etcd to attestation or the reverse, so the rule lives twice, tested on both sides.
    /// </summary>
    public static X509ChainPolicy NoDownloadsPolicy() => new()
    {
        DisableCertificateDownloads = true,
        RevocationMode = X509RevocationMode.NoCheck,
    };

    /// <summary>Whether the certificate's subject names the admin organization (checked after <see cref="ChainsTo"/>).</summary>
    public static bool IsAdmin(X509Certificate2? certificate)
    {
        if (certificate is null)
        {
            return false;
        }
        foreach (var rdn in certificate.SubjectName.EnumerateRelativeDistinguishedNames())
        {
            if (rdn.GetSingleElementType().Value == "2.5.4.10" && rdn.GetSingleElementValue() == AdminOrganization)
            {
                return true;
            }
        }
        return false;
    }
}
