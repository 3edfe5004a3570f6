using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Asterism.Attestation.Identities;

/// <summary>
/// The X.509 form of a node identity: a certificate by the provider CA whose subject is
/// <c>CN=instance name, OU=role, O=Asterism node</c> and whose public key is the node's attestation key (the
/// simulated software key, or the TPM AK). One ECDSA P-256 / SHA-256 profile, nothing optional, so issuing and
/// checking agree byte for byte on what is allowed.
/// </summary>
public static class IdentityCertificate
{
    /// <summary>Identity certificates are small; anything larger is refused before parsing.</summary>
    public const int MaxSize = 4096;

    /// <summary>The organization every identity certificate names.</summary>
    public const string Organization = "Asterism node";

    /// <summary>Instance names: lowercase letters, digits, '-' and '.', 1-63 characters.</summary>
    public static bool IsValidName(string? name) =>
        name is { Length: > 0 and <= 63 } && name.All(c => c is >= 'a' and <= 'z' or >= '0' and <= '9' or '-' or '.');

    public static bool IsValidRole(string? role) => role is NodeIdentity.ControlPlaneRole or NodeIdentity.WorkerRole;

    /// <summary>
    /// Issues the identity certificate of <paramref name="name"/> in <paramref name="role"/> for the public key
    /// <paramref name="subjectPublicKeyInfo"/> (DER SPKI, ECDSA P-256), signed by <paramref name="authorityKey"/>.
    /// </summary>
    public static byte[] Issue(ECDsa authorityKey, X509Certificate2 authority, string name, string role, ReadOnlySpan<byte> subjectPublicKeyInfo, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        ArgumentNullException.ThrowIfNull(authorityKey);
        ArgumentNullException.ThrowIfNull(authority);
        if (!IsValidName(name))
        {
            throw new ArgumentException("instance name must be 1-63 characters of a-z, 0-9, '-' and '.'", nameof(name));
        }
        if (!IsValidRole(role))
        {
            throw new ArgumentException("role must be control-plane or worker", nameof(role));
        }
        var publicKey = PublicKey.CreateFromSubjectPublicKeyInfo(subjectPublicKeyInfo, out var read);
        if (read != subjectPublicKeyInfo.Length || publicKey.Oid.Value != "1.2.840.10045.2.1")
        {
            throw new ArgumentException("the subject key must be an EC public key (DER SubjectPublicKeyInfo)", nameof(subjectPublicKeyInfo));
        }
        var subject = new X500DistinguishedNameBuilder();
        subject.AddOrganizationName(Organization);
        subject.AddOrganizationalUnitName(role);
        subject.AddCommonName(name);
        var request = new CertificateRequest(subject.Build(), publicKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using var certificate = request.Create(authority.SubjectName, X509SignatureGenerator.CreateForECDsa(authorityKey), notBefore, notAfter, serial);
        return certificate.RawData;
    }

    /// <summary>A self-signed ECDSA P-256 authority certificate (the provider CA).</summary>
    public static X509Certificate2 CreateAuthority(ECDsa key, string commonName, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        ArgumentNullException.ThrowIfNull(key);
        var subject = new X500DistinguishedNameBuilder();
        subject.AddOrganizationName("Asterism provider");
        subject.AddCommonName(commonName);
        var request = new CertificateRequest(subject.Build(), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        using var certificate = request.CreateSelfSigned(notBefore, notAfter);
        return X509CertificateLoader.LoadCertificate(certificate.RawData);
    }

    /// <summary>Lowercase hex SHA-256 of a certificate's DER.</summary>
    public static string FingerprintOf(ReadOnlySpan<byte> der) => Convert.ToHexStringLower(SHA256.HashData(der));

    /// <summary>
    /// Splits DER <c>Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }</c> without
    /// interpreting the TBS part; false on any malformation or trailing byte.
    /// </summary>
    internal static bool TrySplit(ReadOnlySpan<byte> der, out ReadOnlySpan<byte> tbs, out string algorithm, out ReadOnlySpan<byte> signature)
    {
        tbs = default;
        signature = default;
        algorithm = "";
        try
        {
            AsnDecoder.ReadSequence(der, AsnEncodingRules.DER, out var contentOffset, out var contentLength, out var consumed);
            if (consumed != der.Length)
            {
                return false;
            }
            var content = der.Slice(contentOffset, contentLength);
            AsnDecoder.ReadEncodedValue(content, AsnEncodingRules.DER, out _, out _, out var tbsLength);
            tbs = content[..tbsLength];
            var rest = content[tbsLength..];
            AsnDecoder.ReadSequence(rest, AsnEncodingRules.DER, out var algOffset, out var algLength, out var algConsumed);
            var algContent = rest.Slice(algOffset, algLength);
            algorithm = AsnDecoder.ReadObjectIdentifier(algContent, AsnEncodingRules.DER, out var oidConsumed);
            if (oidConsumed != algContent.Length)
            {
                // ecdsa-with-SHA256 has absent parameters.
                return false;
            }
            rest = rest[algConsumed..];
            var bits = AsnDecoder.ReadBitString(rest, AsnEncodingRules.DER, out var unused, out var bitsConsumed);
            if (unused != 0 || bitsConsumed != rest.Length)
            {
                return false;
            }
            signature = bits.ToArray();
            return true;
        }
        catch (AsnContentException)
        {
            return false;
        }
    }
}
