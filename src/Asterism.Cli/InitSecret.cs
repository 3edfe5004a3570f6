using System.Security.Cryptography;
using System.Text;
using Asterism.Protocol;

namespace Asterism.Cli;

/// <summary>
/// The init secret: 32 random bytes `create` writes to the workspace (hex, mode 0600). The provider hands only its
/// SHA-256 to control-plane-0, which takes init from a caller that knows the secret and nobody else — so a local
/// process that reaches control-plane-0 before the operator cannot initialize the cluster with its own master secret.
/// </summary>
public static class InitSecret
{
    /// <summary>Makes a new secret at <paramref name="path"/> (replacing one of an earlier cluster) and returns its hex SHA-256.</summary>
    public static string Create(string path)
    {
        var secret = RandomNumberGenerator.GetBytes(InitSecretFormat.Length);
        var text = Encoding.ASCII.GetBytes(Convert.ToHexStringLower(secret) + "\n");
        try
        {
            Asterism.Attestation.Identities.IdentityFiles.WritePrivateFile(path, text);
            return Convert.ToHexStringLower(SHA256.HashData(secret));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(secret);
            CryptographicOperations.ZeroMemory(text);
        }
    }

    /// <summary>Reads the secret; a missing, unreadable, group/world-accessible or malformed file is a <see cref="CliError"/>.</summary>
    public static byte[] Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new CliError($"init secret {path} does not exist; it is made by 'asterism create' in the same workspace");
        }
        if (Asterism.Cloud.OwnerOnly.IsOpenToOthers(path))
        {
            throw new CliError($"init secret {path} is accessible by group or others; run: {Asterism.Cloud.OwnerOnly.ChmodHint(path)}");
        }
        byte[] text;
        try
        {
            text = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliError($"init secret {path} cannot be read: {e.Message}");
        }
        try
        {
            var hex = Encoding.ASCII.GetString(text).Trim();
            if (hex.Length != InitSecretFormat.Length * 2 || !hex.All(char.IsAsciiHexDigitLower))
            {
                throw new CliError($"init secret {path} is malformed (expected {InitSecretFormat.Length * 2} lowercase hex digits)");
            }
            return Convert.FromHexString(hex);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(text);
        }
    }
}
