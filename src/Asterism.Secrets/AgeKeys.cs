using System.Security.Cryptography;
using System.Text;
using Org.BouncyCastle.Math.EC.Rfc7748;

namespace Asterism.Secrets;

/// <summary>An age X25519 recipient (<c>age1…</c>): the public key a share is encrypted to.</summary>
public sealed class AgeRecipient
{
    public const string Hrp = "age";

    private readonly byte[] _publicKey;

    internal AgeRecipient(byte[] publicKey) => _publicKey = publicKey;

    public ReadOnlySpan<byte> PublicKey => _publicKey;

    /// <summary>Parses <c>age1…</c>; anything else (an ssh key, a plugin recipient, a typo) is an <see cref="AgeException"/>.</summary>
    public static AgeRecipient Parse(string text)
    {
        var trimmed = text.Trim();
        var bytes = Bech32.Decode(trimmed, Hrp);
        if (bytes is null || bytes.Length != X25519.PointSize || trimmed.Any(char.IsAsciiLetterUpper))
        {
            throw new AgeException($"\"{Shorten(trimmed)}\" is not an age X25519 recipient (age1…, 62 characters)");
        }
        return new AgeRecipient(bytes);
    }

    public override string ToString() => Bech32.Encode(Hrp, _publicKey);

    /// <summary>
    /// The start of what was given, for the error line. Anything outside printable ASCII becomes '?': the text may be
    /// a crafted file's, and control characters or newlines would let it forge further lines on the operator's terminal.
    /// </summary>
    internal static string Shorten(string text)
    {
        var shown = text.Length > 24 ? text[..12] + "…" : text;
        return string.Create(shown.Length, shown, (span, source) =>
        {
            for (var i = 0; i < source.Length; i++)
            {
                span[i] = source[i] is '…' or (> ' ' and < (char)127) ? source[i] : '?';
            }
        });
    }
}

/// <summary>
/// An age X25519 identity (<c>AGE-SECRET-KEY-1…</c>): the private key that opens a share file. Printed as
/// [redacted]; <see cref="Dispose"/> zeroes it.
/// </summary>
public sealed class AgeIdentity : IDisposable
{
    public const string Hrp = "AGE-SECRET-KEY-";

    /// <summary>An identity file holds a few keys and comments; a larger file is not one.</summary>
    public const int MaxFileSize = 64 * 1024;

    private readonly byte[] _scalar;

    private AgeIdentity(byte[] scalar) => _scalar = scalar;

    internal ReadOnlySpan<byte> Scalar => _scalar;

    /// <summary>The recipient that encrypts to this identity.</summary>
    public AgeRecipient Recipient
    {
        get
        {
            var point = new byte[X25519.PointSize];
            X25519.ScalarMultBase(_scalar, 0, point, 0);
            return new AgeRecipient(point);
        }
    }

    public static AgeIdentity Generate() => new(RandomNumberGenerator.GetBytes(X25519.ScalarSize));

    /// <summary>Parses one <c>AGE-SECRET-KEY-1…</c> line; the message never repeats the key.</summary>
    public static AgeIdentity Parse(string text)
    {
        var trimmed = text.Trim();
        var bytes = Bech32.Decode(trimmed, Hrp);
        if (bytes is null || bytes.Length != X25519.ScalarSize || trimmed.Any(char.IsAsciiLetterLower))
        {
            if (bytes is not null)
            {
                CryptographicOperations.ZeroMemory(bytes);
            }
            throw new AgeException("not an age X25519 identity (AGE-SECRET-KEY-1…)");
        }
        return new AgeIdentity(bytes);
    }

    /// <summary>
    /// Reads an identity file as age-keygen writes it: one identity per line, blank lines and # comments allowed.
    /// Every other line must be an X25519 identity; errors name the file and line, never its contents.
    /// </summary>
    public static IReadOnlyList<AgeIdentity> ParseFile(ReadOnlySpan<byte> content, string name)
    {
        if (content.Length > MaxFileSize)
        {
            throw new AgeException($"identity file {name} is larger than {MaxFileSize} bytes");
        }
        var text = Encoding.UTF8.GetString(content);
        var identities = new List<AgeIdentity>();
        var lines = text.Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i].TrimEnd('\r').Trim();
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }
            try
            {
                identities.Add(Parse(line));
            }
            catch (AgeException)
            {
                foreach (var identity in identities)
                {
                    identity.Dispose();
                }
                throw new AgeException($"identity file {name} line {i + 1} is not an age X25519 identity (AGE-SECRET-KEY-1…)");
            }
        }
        if (identities.Count == 0)
        {
            throw new AgeException($"identity file {name} holds no age identity");
        }
        return identities;
    }

    /// <summary>The identity in age-keygen's form (the caller must keep it secret).</summary>
    public string Encode() => Bech32.Encode(Hrp, _scalar, upper: true);

    public override string ToString() => "[redacted]";

    public void Dispose() => CryptographicOperations.ZeroMemory(_scalar);
}

/// <summary>An age file, key or recipient that cannot be used; the message names the problem, never key bytes.</summary>
public sealed class AgeException(string message) : Exception(message);
