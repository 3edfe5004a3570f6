using System.Security.Cryptography;
using System.Text;

namespace Asterism.Cloud;

/// <summary>
/// The workspace's API credential: 32 random bytes as 64 lowercase hex characters in
/// <c>.asterism/cloud/api-token</c> (0600, inside the 0700 cloud directory). Whoever can read it is the operator:
/// the CLI sends it as <c>Authorization: Bearer TOKEN</c> to the provider's mutating API and to the nodes' workload
/// API. Nodes never see the token itself, only its SHA-256 (<see cref="HashFileName"/> in their 0700 node directory).
/// </summary>
public sealed class ApiCredential
{
    public const string FileName = "api-token";

    /// <summary>The node's copy of SHA-256(token), hex, written by the provider into the node directory.</summary>
    public const string HashFileName = "api-credential.sha256";

    private const int TokenBytes = 32;
    private const int MaxFileBytes = 256;

    private ApiCredential(string token) => Token = token;

    /// <summary>The bearer token (64 lowercase hex characters). Never log it.</summary>
    public string Token { get; }

    /// <summary>The value of the Authorization header.</summary>
    public string AuthorizationValue => "Bearer " + Token;

    public static ApiCredential Generate() => new(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(TokenBytes)));

    /// <summary>Loads the token file, or creates it (0600) when it does not exist yet.</summary>
    public static ApiCredential LoadOrCreate(string path)
    {
        if (!File.Exists(path))
        {
            var created = Generate();
            try
            {
                using var stream = new FileStream(path, OwnerOnly.Options(FileMode.CreateNew, FileAccess.Write));
                stream.Write(Encoding.ASCII.GetBytes(created.Token + "\n"));
                stream.Flush(flushToDisk: true);
                return created;
            }
            catch (IOException) when (File.Exists(path))
            {
                // Another process created it first: use theirs so both agree.
            }
        }
        return Load(path);
    }

    /// <summary>
    /// Reads the token file. Refuses a file that group or others may access (the message names the chmod to run),
    /// and anything that is not exactly one token. Errors never contain file contents.
    /// </summary>
    public static ApiCredential Load(string path)
    {
        string text;
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                throw new CloudConfigException($"API credential {path} does not exist");
            }
            if (OwnerOnly.IsOpenToOthers(path))
            {
                throw new CloudConfigException($"API credential {path} is accessible by group or others; run: {OwnerOnly.ChmodHint(path)}");
            }
            if (info.Length > MaxFileBytes)
            {
                throw new CloudConfigException($"API credential {path} is too large to be a token");
            }
            text = File.ReadAllText(path, Encoding.ASCII).Trim();
        }
        catch (IOException e)
        {
            throw new CloudConfigException($"cannot read API credential {path}: {e.GetType().Name}");
        }
        catch (UnauthorizedAccessException)
        {
            throw new CloudConfigException($"cannot read API credential {path}: permission denied");
        }
        if (text.Length != TokenBytes * 2 || !text.All(char.IsAsciiHexDigitLower))
        {
            throw new CloudConfigException($"API credential {path} does not hold a token ({TokenBytes * 2} lowercase hex characters)");
        }
        return new ApiCredential(text);
    }

    /// <summary>SHA-256 of the token's ASCII form: what a verifier stores instead of the token.</summary>
    public byte[] Hash() => HashOf(Token);

    /// <summary>Writes SHA-256(token) as hex into <paramref name="path"/> (0600) for a node.</summary>
    public void WriteHashFile(string path) => OwnerOnly.WriteAllText(path, Convert.ToHexStringLower(Hash()) + "\n");

    /// <summary>A verifier for this credential (the provider checks callers with it).</summary>
    public ApiCredentialVerifier Verifier() => new(Hash());

    public override string ToString() => "[redacted]";

    internal static byte[] HashOf(string token)
    {
        var max = Encoding.UTF8.GetMaxByteCount(token.Length);
        var bytes = max <= 512 ? stackalloc byte[max] : new byte[max];
        var n = Encoding.UTF8.GetBytes(token, bytes);
        var hash = SHA256.HashData(bytes[..n]);
        CryptographicOperations.ZeroMemory(bytes);
        return hash;
    }
}

/// <summary>Outcome of checking a request's credential.</summary>
public enum CredentialCheck
{
    Valid,

    /// <summary>No Authorization header, or not a bearer token.</summary>
    Missing,

    /// <summary>A bearer token that is not the workspace's.</summary>
    Wrong,

    /// <summary>The verifier has no credential to compare with (its hash file was missing): everything is refused.</summary>
    NotConfigured,
}

/// <summary>
/// Checks presented bearer tokens against SHA-256(token) in constant time: hashing first makes the comparison
/// independent of the presented length, and lets a node check without holding the token.
/// </summary>
public sealed class ApiCredentialVerifier
{
    private const int MaxHeaderLength = 512;
    private const string Scheme = "Bearer ";
    private readonly byte[]? _hash;

    internal ApiCredentialVerifier(byte[]? hash) => _hash = hash;

    /// <summary>A verifier that refuses everything (fail closed when no credential is configured).</summary>
    public static ApiCredentialVerifier RefuseAll { get; } = new(null);

    /// <summary>
    /// Loads a node's hash file. A missing, unreadable, malformed or group/world-accessible file gives
    /// <see cref="RefuseAll"/> and a reason, never a verifier that accepts anything.
    /// </summary>
    public static ApiCredentialVerifier LoadHashFile(string path, out string? problem)
    {
        problem = null;
        try
        {
            if (!File.Exists(path))
            {
                problem = $"{path} does not exist";
                return RefuseAll;
            }
            if (OwnerOnly.IsOpenToOthers(path))
            {
                problem = $"{path} is accessible by group or others; run: {OwnerOnly.ChmodHint(path)}";
                return RefuseAll;
            }
            if (new FileInfo(path).Length > 256)
            {
                problem = $"{path} is too large";
                return RefuseAll;
            }
            var text = File.ReadAllText(path, Encoding.ASCII).Trim();
            if (text.Length != 64 || !text.All(char.IsAsciiHexDigitLower))
            {
                problem = $"{path} does not hold a SHA-256 hex digest";
                return RefuseAll;
            }
            return new ApiCredentialVerifier(Convert.FromHexString(text));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problem = $"{path} cannot be read: {e.GetType().Name}";
            return RefuseAll;
        }
    }

    /// <summary>Checks an Authorization header value ("Bearer TOKEN").</summary>
    public CredentialCheck Check(string? authorization)
    {
        if (_hash is null)
        {
            return CredentialCheck.NotConfigured;
        }
        if (string.IsNullOrEmpty(authorization) || authorization.Length > MaxHeaderLength
            || !authorization.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase) || authorization.Length == Scheme.Length)
        {
            return CredentialCheck.Missing;
        }
        var presented = ApiCredential.HashOf(authorization[Scheme.Length..].Trim());
        return CryptographicOperations.FixedTimeEquals(presented, _hash) ? CredentialCheck.Valid : CredentialCheck.Wrong;
    }
}
