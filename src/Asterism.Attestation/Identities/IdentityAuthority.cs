using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Asterism.Attestation.Identities;

/// <summary>The outcome of checking an identity certificate.</summary>
public readonly record struct IdentityCheck(NodeIdentity? Identity, string Error)
{
    public bool Accepted => Identity is not null;
}

/// <summary>
/// A trust anchor for node identities (the provider CA; on a real cloud, the cloud's vTPM AK authority). Checks that
/// an identity certificate was signed by this authority, is valid now, is an end-entity certificate of the identity
/// profile, and certifies exactly the attestation key that signed the document. Verified certificates are kept
/// (bounded, public data only) so a node seen again costs one hash, not a signature verification.
/// </summary>
public sealed class IdentityAuthority : IDisposable
{
    private const string EcdsaWithSha256 = "1.2.840.10045.4.3.2";
    private const string P256Oid = "1.2.840.10045.3.1.7";
    private const int CacheCapacity = 1024;

    private readonly ECDsa _key;
    private readonly byte[] _subject;
    private readonly ConcurrentDictionary<string, Verified> _verified = new(StringComparer.Ordinal);

    public IdentityAuthority(ReadOnlySpan<byte> certificateDer)
    {
        if (certificateDer.Length > IdentityCertificate.MaxSize)
        {
            throw new ArgumentException("authority certificate is too large", nameof(certificateDer));
        }
        X509Certificate2 certificate;
        try
        {
            certificate = X509CertificateLoader.LoadCertificate(certificateDer);
        }
        catch (CryptographicException e)
        {
            throw new ArgumentException("authority certificate is not a DER X.509 certificate", nameof(certificateDer), e);
        }
        using (certificate)
        {
            var key = certificate.GetECDsaPublicKey() ?? throw new ArgumentException("authority certificate has no ECDSA key", nameof(certificateDer));
            if (key.ExportParameters(false).Curve.Oid?.Value != P256Oid)
            {
                key.Dispose();
                throw new ArgumentException("authority key must be ECDSA P-256", nameof(certificateDer));
            }
            _key = key;
            _subject = certificate.SubjectName.RawData;
            CertificateDer = certificate.RawData;
            Fingerprint = IdentityCertificate.FingerprintOf(CertificateDer);
            Subject = certificate.Subject;
        }
    }

    /// <summary>DER of the authority certificate.</summary>
    public byte[] CertificateDer { get; }

    /// <summary>Lowercase hex SHA-256 of <see cref="CertificateDer"/>.</summary>
    public string Fingerprint { get; }

    public string Subject { get; }

    /// <summary>Parses a PEM "CERTIFICATE" block.</summary>
    public static IdentityAuthority FromPem(string pem)
    {
        ArgumentNullException.ThrowIfNull(pem);
        if (!PemEncoding.TryFind(pem, out var fields) || pem[fields.Label] is not "CERTIFICATE")
        {
            throw new ArgumentException("authority certificate: no PEM CERTIFICATE block");
        }
        return new IdentityAuthority(Convert.FromBase64String(pem[fields.Base64Data].ToString()));
    }

    /// <summary>
    /// Checks <paramref name="certificateDer"/> against this authority at time <paramref name="now"/> and that it
    /// certifies <paramref name="attestationKeySpki"/>; every failure is a value with a reason.
    /// </summary>
    public IdentityCheck Verify(ReadOnlySpan<byte> certificateDer, ReadOnlySpan<byte> attestationKeySpki, DateTimeOffset now)
    {
        if (certificateDer.IsEmpty)
        {
            return Refuse("the document carries no identity certificate");
        }
        if (certificateDer.Length > IdentityCertificate.MaxSize)
        {
            return Refuse($"identity certificate of {certificateDer.Length} bytes exceeds {IdentityCertificate.MaxSize}");
        }
        var fingerprint = IdentityCertificate.FingerprintOf(certificateDer);
        if (!_verified.TryGetValue(fingerprint, out var verified) || !verified.Der.AsSpan().SequenceEqual(certificateDer))
        {
            var (parsed, error) = Parse(certificateDer, fingerprint);
            if (parsed is null)
            {
                return Refuse(error);
            }
            verified = parsed;
            if (_verified.Count < CacheCapacity)
            {
                _verified.TryAdd(fingerprint, verified);
            }
        }
        if (now < verified.NotBefore || now > verified.NotAfter)
        {
            return Refuse($"identity certificate of {verified.Identity.Name} is not valid now (valid {verified.NotBefore:u} to {verified.NotAfter:u})");
        }
        if (!verified.Spki.AsSpan().SequenceEqual(attestationKeySpki))
        {
            return Refuse($"identity certificate of {verified.Identity.Name} certifies another key than the one that signed the attestation");
        }
        return new IdentityCheck(verified.Identity, "");
    }

    public void Dispose() => _key.Dispose();

    private (Verified? Verified, string Error) Parse(ReadOnlySpan<byte> der, string fingerprint)
    {
        if (!IdentityCertificate.TrySplit(der, out var tbs, out var algorithm, out var signature))
        {
            return (null, "identity certificate is not well-formed DER");
        }
        if (algorithm != EcdsaWithSha256)
        {
            return (null, $"identity certificate is signed with {algorithm}, expected ecdsa-with-SHA256");
        }
        bool signed;
        lock (_key)
        {
            signed = _key.VerifyData(tbs, signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        }
        if (!signed)
        {
            return (null, $"identity certificate is not signed by the trusted authority {Fingerprint[..16]}");
        }
        X509Certificate2 certificate;
        try
        {
            certificate = X509CertificateLoader.LoadCertificate(der);
        }
        catch (CryptographicException)
        {
            return (null, "identity certificate cannot be read");
        }
        using (certificate)
        {
            if (!certificate.IssuerName.RawData.AsSpan().SequenceEqual(_subject))
            {
                return (null, "identity certificate names another issuer");
            }
            if (certificate.Extensions[Oids.BasicConstraints] is not X509BasicConstraintsExtension { CertificateAuthority: false })
            {
                return (null, "identity certificate is not an end-entity certificate");
            }
            if (!TryReadSubject(certificate.SubjectName, out var name, out var role))
            {
                return (null, "identity certificate subject is not CN=NAME, OU=ROLE, O=" + IdentityCertificate.Organization);
            }
            var identity = new NodeIdentity(name, role, fingerprint, Fingerprint);
            return (new Verified(der.ToArray(), certificate.PublicKey.ExportSubjectPublicKeyInfo(), identity,
                new DateTimeOffset(certificate.NotBefore.ToUniversalTime()), new DateTimeOffset(certificate.NotAfter.ToUniversalTime())), "");
        }
    }

    private static bool TryReadSubject(X500DistinguishedName subject, out string name, out string role)
    {
        name = "";
        role = "";
        string? o = null;
        var count = 0;
        foreach (var rdn in subject.EnumerateRelativeDistinguishedNames())
        {
            count++;
            if (rdn.HasMultipleElements)
            {
                return false;
            }
            var value = rdn.GetSingleElementValue();
            switch (rdn.GetSingleElementType().Value)
            {
                case "2.5.4.3":
                    name = value ?? "";
                    break;
                case "2.5.4.11":
                    role = value ?? "";
                    break;
                case "2.5.4.10":
                    o = value;
                    break;
                default:
                    return false;
            }
        }
        return count == 3 && o == IdentityCertificate.Organization && IdentityCertificate.IsValidName(name) && IdentityCertificate.IsValidRole(role);
    }

    private static IdentityCheck Refuse(string error) => new(null, error);

    private sealed record Verified(byte[] Der, byte[] Spki, NodeIdentity Identity, DateTimeOffset NotBefore, DateTimeOffset NotAfter);

    private static class Oids
    {
        public const string BasicConstraints = "2.5.29.19";
    }
}
