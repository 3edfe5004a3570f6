using System.Formats.Asn1;
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

    private const string EcdsaWithSha256 = "1.2.840.10045.4.3.2";
    private static readonly byte[] SubjectDer = new X500DistinguishedName(SubjectName).RawData;
    private static readonly byte[] SignatureAlgorithmDer = EncodeSignatureAlgorithm();

    /// <summary>Per-connection certificates are valid now ± this (the nonce, not the dates, gives freshness).</summary>
    private static readonly TimeSpan Validity = TimeSpan.FromHours(2);

    /// <summary>Makes a key, has <paramref name="issuer"/> attest it for <paramref name="nonce"/>, and wraps both in a certificate.</summary>
    public static async ValueTask<X509Certificate2> CreateAsync(IAttestationIssuer issuer, ReadOnlyMemory<byte> nonce, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(issuer);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var certificate = await CreateDerAsync(key, issuer, nonce, now, cancellationToken).ConfigureAwait(false);
        return WithPrivateKey(certificate, key);
    }

    /// <summary>
    /// The DER certificate for <paramref name="key"/>, carrying <paramref name="issuer"/>'s document bound to the key
    /// and <paramref name="nonce"/>. The aTLS server hands the DER straight to OpenSSL (no X509Certificate2).
    /// </summary>
    public static async ValueTask<byte[]> CreateDerAsync(ECDsa key, IAttestationIssuer issuer, ReadOnlyMemory<byte> nonce, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(issuer);
        var subjectPublicKeyInfo = key.ExportSubjectPublicKeyInfo();
        var document = await issuer.IssueAsync(UserDataFor(subjectPublicKeyInfo), nonce, cancellationToken).ConfigureAwait(false);
        return BuildDer(key, subjectPublicKeyInfo, issuer.Variant.Oid, document, now.Add(-Validity), now.Add(Validity));
    }

    /// <summary>A self-signed certificate for <paramref name="key"/>, with <paramref name="document"/> under <paramref name="oid"/> when given.</summary>
    public static X509Certificate2 Build(ECDsa key, string? oid, byte[]? document, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(key);
        return WithPrivateKey(BuildDer(key, key.ExportSubjectPublicKeyInfo(), oid, document, now.Add(-Validity), now.Add(Validity)), key);
    }

    /// <summary>A plain self-signed certificate (no document) valid from <paramref name="notBefore"/> to <paramref name="notAfter"/>.</summary>
    internal static X509Certificate2 Build(ECDsa key, DateTimeOffset notBefore, DateTimeOffset notAfter) =>
        WithPrivateKey(BuildDer(key, key.ExportSubjectPublicKeyInfo(), null, null, notBefore, notAfter), key);

    /// <summary>
    /// X.509 v3, random positive 128-bit serial, issuer = subject = <see cref="SubjectName"/>, the given validity,
    /// ecdsa-with-SHA256, and the document (if any) as the only extension, non-critical.
    /// </summary>
    private static byte[] BuildDer(ECDsa key, byte[] subjectPublicKeyInfo, string? oid, byte[]? document, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        var tbs = new AsnWriter(AsnEncodingRules.DER);
        using (tbs.PushSequence())
        {
            var version = new Asn1Tag(TagClass.ContextSpecific, 0);
            using (tbs.PushSequence(version))
            {
                tbs.WriteInteger(2);
            }
            Span<byte> serial = stackalloc byte[16];
            RandomNumberGenerator.Fill(serial);
            serial[0] = (byte)((serial[0] & 0x7F) | 0x40);
            tbs.WriteInteger(serial);
            tbs.WriteEncodedValue(SignatureAlgorithmDer);
            tbs.WriteEncodedValue(SubjectDer);
            using (tbs.PushSequence())
            {
                tbs.WriteUtcTime(notBefore);
                tbs.WriteUtcTime(notAfter);
            }
            tbs.WriteEncodedValue(SubjectDer);
            tbs.WriteEncodedValue(subjectPublicKeyInfo);
            if (oid is not null && document is not null)
            {
                var extensions = new Asn1Tag(TagClass.ContextSpecific, 3);
                using (tbs.PushSequence(extensions))
                using (tbs.PushSequence())
                using (tbs.PushSequence())
                {
                    tbs.WriteObjectIdentifier(oid);
                    tbs.WriteOctetString(document);
                }
            }
        }
        var toBeSigned = tbs.Encode();
        var signature = key.SignData(toBeSigned, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        var certificate = new AsnWriter(AsnEncodingRules.DER);
        using (certificate.PushSequence())
        {
            certificate.WriteEncodedValue(toBeSigned);
            certificate.WriteEncodedValue(SignatureAlgorithmDer);
            certificate.WriteBitString(signature);
        }
        return certificate.Encode();
    }

    private static X509Certificate2 WithPrivateKey(byte[] der, ECDsa key)
    {
        using var publicOnly = X509CertificateLoader.LoadCertificate(der);
        return publicOnly.CopyWithPrivateKey(key);
    }

    private static byte[] EncodeSignatureAlgorithm()
    {
        var writer = new AsnWriter(AsnEncodingRules.DER);
        using (writer.PushSequence())
        {
            writer.WriteObjectIdentifier(EcdsaWithSha256);
        }
        return writer.Encode();
    }

    /// <summary>userData for a TLS key: SHA-256 of its DER SubjectPublicKeyInfo.</summary>
    public static byte[] UserDataFor(ReadOnlySpan<byte> subjectPublicKeyInfo) => SHA256.HashData(subjectPublicKeyInfo);

    public static byte[] UserDataFor(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return UserDataFor(certificate.PublicKey.ExportSubjectPublicKeyInfo());
    }
}
