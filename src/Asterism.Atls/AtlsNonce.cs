using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.RegularExpressions;

namespace Asterism.Atls;

/// <summary>
/// The verifier's fresh 32-byte nonce and its two wire forms: as a TLS server name (the client's nonce when the
/// server attests) and as the only acceptable CA name of a CertificateRequest (the server's nonce when the client attests).
/// </summary>
public static partial class AtlsNonce
{
    public const int Length = 32;

    /// <summary>The last label of nonce server names: <c>&lt;32 hex&gt;.&lt;32 hex&gt;.atls</c>.</summary>
    public const string ServerNameSuffix = ".atls";

    /// <summary>The OU that marks the acceptable-CA name carrying the server's nonce.</summary>
    public const string AuthorityUnit = "asterism-atls-nonce";

    public static byte[] Create() => RandomNumberGenerator.GetBytes(Length);

    /// <summary>DNS-safe: lowercase hex split in two 32-character labels plus <see cref="ServerNameSuffix"/> (70 characters).</summary>
    public static string ToServerName(ReadOnlySpan<byte> nonce)
    {
        CheckLength(nonce);
        var hex = Convert.ToHexStringLower(nonce);
        return string.Concat(hex.AsSpan(0, Length), ".", hex.AsSpan(Length), ServerNameSuffix);
    }

    public static bool TryParseServerName(string? serverName, out byte[] nonce)
    {
        nonce = [];
        if (serverName is null || serverName.Length != (2 * Length) + 1 + ServerNameSuffix.Length
            || !serverName.EndsWith(ServerNameSuffix, StringComparison.Ordinal) || serverName[Length] != '.')
        {
            return false;
        }
        var hex = string.Concat(serverName.AsSpan(0, Length), serverName.AsSpan(Length + 1, Length));
        if (!IsLowerHex(hex))
        {
            return false;
        }
        nonce = Convert.FromHexString(hex);
        return true;
    }

    /// <summary>
    /// A throw-away certificate (without private key) whose Subject carries the nonce: the only part that reaches the
    /// wire, in the CertificateRequest's certificate_authorities. The signing key is irrelevant and may be shared;
    /// calls with the same key are serialized because ECDsa instances are not documented thread-safe.
    /// </summary>
    public static X509Certificate2 CreateAuthority(ReadOnlySpan<byte> nonce, ECDsa signingKey, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(signingKey);
        var name = AuthorityName(nonce);
        var request = new CertificateRequest(name, signingKey, HashAlgorithmName.SHA256);
        Span<byte> serial = stackalloc byte[16];
        RandomNumberGenerator.Fill(serial);
        serial[0] &= 0x7f;
        lock (signingKey)
        {
            return request.Create(name, X509SignatureGenerator.CreateForECDsa(signingKey), now.AddHours(-2), now.AddHours(2), serial);
        }
    }

    /// <summary>The acceptable-CA name carrying <paramref name="nonce"/>: <c>CN=&lt;64 hex&gt;, OU=asterism-atls-nonce</c>.</summary>
    public static X500DistinguishedName AuthorityName(ReadOnlySpan<byte> nonce)
    {
        CheckLength(nonce);
        return new X500DistinguishedName($"CN={Convert.ToHexStringLower(nonce)}, OU={AuthorityUnit}");
    }

    /// <summary>Reads the nonce from the acceptable CA names a server sent; exactly one name, of our form, is accepted.</summary>
    public static bool TryParseAuthorities(string[]? acceptableIssuers, out byte[] nonce)
    {
        nonce = [];
        if (acceptableIssuers is not { Length: 1 })
        {
            return false;
        }
        var match = AuthorityName().Match(acceptableIssuers[0]);
        if (!match.Success)
        {
            return false;
        }
        nonce = Convert.FromHexString(match.Groups[1].ValueSpan);
        return true;
    }

    [GeneratedRegex("^CN=([0-9a-f]{64}), OU=" + AuthorityUnit + "$", RegexOptions.CultureInvariant, matchTimeoutMilliseconds: 100)]
    private static partial Regex AuthorityName();

    private static bool IsLowerHex(string s) => s.All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f');

    private static void CheckLength(ReadOnlySpan<byte> nonce)
    {
        if (nonce.Length != Length)
        {
            throw new ArgumentException($"an aTLS nonce is {Length} bytes", nameof(nonce));
        }
    }
}
