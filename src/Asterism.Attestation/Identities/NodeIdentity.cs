using System.Security.Cryptography;
using System.Text;

namespace Asterism.Attestation.Identities;

/// <summary>
/// Who a node is, as its provider certified it: the instance name and role in its identity certificate, that
/// certificate's fingerprint and the fingerprint of the authority (provider CA) that issued it. Validators put it in
/// <see cref="AttestationFacts"/>; key release decides by it, never by what a request claims.
/// </summary>
public sealed record NodeIdentity(string Name, string Role, string CertificateFingerprint, string AuthorityFingerprint)
{
    public const string ControlPlaneRole = "control-plane";
    public const string WorkerRole = "worker";

    private const string DiskUuidDomain = "asterism-disk-uuid-v1";

    public bool IsControlPlane => Role == ControlPlaneRole;

    /// <summary>The state-disk UUID this identity owns (see <see cref="DiskUuidFor"/>).</summary>
    public string DiskUuid => DiskUuidFor(AuthorityFingerprint, Name);

    /// <summary>
    /// The disk UUID that belongs to instance <paramref name="name"/> under the authority with fingerprint
    /// <paramref name="authorityFingerprint"/>: SHA-256 over a domain tag, the authority and the name, cut to a
    /// version-8 (RFC 9562 custom) UUID in lowercase. Every JoinService and the CLI can check statelessly that a disk
    /// UUID belongs to a certified identity, and two clusters never share a UUID for the same instance name.
    /// </summary>
    public static string DiskUuidFor(string authorityFingerprint, string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(authorityFingerprint);
        ArgumentException.ThrowIfNullOrEmpty(name);
        var input = Encoding.UTF8.GetBytes($"{DiskUuidDomain}\0{authorityFingerprint}\0{name}");
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(input, hash);
        hash[6] = (byte)((hash[6] & 0x0f) | 0x80);
        hash[8] = (byte)((hash[8] & 0x3f) | 0x80);
        var hex = Convert.ToHexStringLower(hash[..16]);
        return $"{hex[..8]}-{hex[8..12]}-{hex[12..16]}-{hex[16..20]}-{hex[20..32]}";
    }

    public override string ToString() => $"{Name} ({Role}, certificate {CertificateFingerprint[..Math.Min(16, CertificateFingerprint.Length)]})";
}
