using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Asterism.Attestation;

namespace Asterism.Atls;

/// <summary>
/// Per-connection self-signed certificates: a fresh ECDSA P-256 key, the attestation document in a non-critical
/// extension under the variant's OID, bound to userData = SHA-256(SubjectPublicKeyInfo DER).
/// </summary>
public static class AtlsCertificate
{
    public const string SubjectName = "CN=asterism-atls";

    /// <summary>Makes a key, has <paramref name="issuer"/> attest it for <paramref name="nonce"/>, and wraps both in a certificate.</summary>
    public static async ValueTask<X509Certificate2> CreateAsync(IAttestationIssuer issuer, ReadOnlyMemory<byte> nonce, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(issuer);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var userData = UserDataFor(key.ExportSubjectPublicKeyInfo());
        var document = await issuer.IssueAsync(userData, nonce, cancellationToken).ConfigureAwait(false);
        return Build(key, issuer.Variant.Oid, document, now);
    }

    /// <summary>A self-signed certificate for <paramref name="key"/>, with <paramref name="document"/> under <paramref name="oid"/> when given.</summary>
    public static X509Certificate2 Build(ECDsa key, string? oid, byte[]? document, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(key);
        var request = new CertificateRequest(SubjectName, key, HashAlgorithmName.SHA256);
        if (oid is not null && document is not null)
        {
            request.CertificateExtensions.Add(new X509Extension(new Oid(oid), document, critical: false));
        }
        return request.CreateSelfSigned(now.AddHours(-2), now.AddHours(2));
    }

    /// <summary>userData for a TLS key: SHA-256 of its DER SubjectPublicKeyInfo.</summary>
    public static byte[] UserDataFor(ReadOnlySpan<byte> subjectPublicKeyInfo) => SHA256.HashData(subjectPublicKeyInfo);

    public static byte[] UserDataFor(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return UserDataFor(certificate.PublicKey.ExportSubjectPublicKeyInfo());
    }
}
