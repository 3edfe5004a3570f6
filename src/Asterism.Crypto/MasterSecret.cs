using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Asterism.Crypto;

/// <summary>
/// The cluster's master secret: key (≥ 16 bytes, 32 when generated) and salt (≥ 32 bytes). Stored by the operator in
/// asterism-mastersecret.json as {"key": base64, "salt": base64} (standard base64 with padding, Constellation's format).
/// </summary>
public sealed class MasterSecret : IDisposable
{
    public const int MinKeyLength = 16;
    public const int MinSaltLength = 32;
    public const int GeneratedLength = 32;
    public const string DefaultFileName = "asterism-mastersecret.json";

    /// <summary>A master secret file is a few hundred bytes; anything much larger is not one.</summary>
    public const int MaxFileSize = 64 * 1024;

    private const UnixFileMode GroupOrOther =
        UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute |
        UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    private readonly SecretBytes _key;
    private readonly SecretBytes _salt;

    private MasterSecret(SecretBytes key, SecretBytes salt)
    {
        _key = key;
        _salt = salt;
    }

    public ReadOnlySpan<byte> Key => _key.Span;

    public ReadOnlySpan<byte> Salt => _salt.Span;

    /// <summary>32 random bytes of key and 32 of salt.</summary>
    public static MasterSecret Generate() =>
        new(SecretBytes.Random(GeneratedLength), SecretBytes.Random(GeneratedLength));

    /// <summary>Copies the given bytes after checking their lengths.</summary>
    public static MasterSecret FromBytes(ReadOnlySpan<byte> key, ReadOnlySpan<byte> salt)
    {
        if (key.Length < MinKeyLength)
        {
            throw new MasterSecretException($"key is {key.Length} bytes, at least {MinKeyLength} are required");
        }
        if (salt.Length < MinSaltLength)
        {
            throw new MasterSecretException($"salt is {salt.Length} bytes, at least {MinSaltLength} are required");
        }
        return new MasterSecret(SecretBytes.CopyOf(key), SecretBytes.CopyOf(salt));
    }

    /// <summary>Reads and validates a master secret file. Errors name the file and the problem, never secret bytes.</summary>
    public static MasterSecret Load(string path)
    {
        byte[] raw;
        try
        {
            var info = new FileInfo(path);
            if (Directory.Exists(path))
            {
                throw new MasterSecretException($"master secret file \"{path}\" is a directory, not a master secret file");
            }
            if (!info.Exists)
            {
                throw new MasterSecretException($"master secret file \"{path}\" does not exist");
            }
            if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(path) & GroupOrOther) != 0)
            {
                // Whoever could read it has every disk key of the cluster: refuse, do not quietly use it.
                throw new MasterSecretException(
                    $"master secret file \"{path}\" is accessible by group or others (mode {ModeString(File.GetUnixFileMode(path))}); run: chmod 600 '{path}'");
            }
            if (info.Length > MaxFileSize)
            {
                throw new MasterSecretException($"master secret file \"{path}\" is {info.Length} bytes, too large to be a master secret");
            }
            raw = File.ReadAllBytes(path);
        }
        catch (IOException ex)
        {
            throw new MasterSecretException($"master secret file \"{path}\" cannot be read: {ex.GetType().Name}");
        }
        catch (UnauthorizedAccessException)
        {
            throw new MasterSecretException($"master secret file \"{path}\" cannot be read: permission denied");
        }
        try
        {
            return Parse(raw);
        }
        catch (MasterSecretException ex)
        {
            throw new MasterSecretException($"master secret file \"{path}\": {ex.Message}");
        }
        finally
        {
            CryptographicOperations.ZeroMemory(raw);
        }
    }

    /// <summary>Parses the JSON form. Messages describe the problem without echoing the input.</summary>
    public static MasterSecret Parse(ReadOnlySpan<byte> json)
    {
        if (json.Length > MaxFileSize)
        {
            throw new MasterSecretException("too large to be a master secret");
        }
        byte[]? key = null;
        byte[]? salt = null;
        try
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 4, CommentHandling = JsonCommentHandling.Disallow });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                throw new MasterSecretException("not a JSON object");
            }
            while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
            {
                if (reader.TokenType != JsonTokenType.PropertyName)
                {
                    throw new MasterSecretException("not a JSON object");
                }
                var name = reader.GetString();
                if (!reader.Read())
                {
                    throw new MasterSecretException("invalid JSON");
                }
                switch (name)
                {
                    case "key":
                        key = ReadBase64(ref reader, "key", key);
                        break;
                    case "salt":
                        salt = ReadBase64(ref reader, "salt", salt);
                        break;
                    default:
                        // Unknown fields are tolerated so files written by newer tools still read; they are ignored.
                        reader.Skip();
                        break;
                }
            }
            if (reader.Read())
            {
                throw new MasterSecretException("trailing data after the JSON object");
            }
            if (key is null)
            {
                throw new MasterSecretException("missing field \"key\"");
            }
            if (salt is null)
            {
                throw new MasterSecretException("missing field \"salt\"");
            }
            return FromBytes(key, salt);
        }
        catch (JsonException)
        {
            throw new MasterSecretException("invalid JSON");
        }
        finally
        {
            if (key is not null)
            {
                CryptographicOperations.ZeroMemory(key);
            }
            if (salt is not null)
            {
                CryptographicOperations.ZeroMemory(salt);
            }
        }
    }

    private static byte[] ReadBase64(ref Utf8JsonReader reader, string field, byte[]? previous)
    {
        if (previous is not null)
        {
            throw new MasterSecretException($"field \"{field}\" appears twice");
        }
        if (reader.TokenType != JsonTokenType.String)
        {
            throw new MasterSecretException($"field \"{field}\" must be a base64 string");
        }
        if (!reader.TryGetBytesFromBase64(out var bytes))
        {
            throw new MasterSecretException($"field \"{field}\" is not valid standard base64");
        }
        return bytes;
    }

    /// <summary>Serialises to Constellation's tab-indented JSON form.</summary>
    public byte[] ToJson()
    {
        var text = "{\n\t\"key\": \"" + Convert.ToBase64String(Key) + "\",\n\t\"salt\": \"" + Convert.ToBase64String(Salt) + "\"\n}\n";
        return Encoding.ASCII.GetBytes(text);
    }

    /// <summary>
    /// Writes the file with mode 0600, refusing to overwrite an existing one (a lost master secret loses the cluster).
    /// </summary>
    public void Save(string path)
    {
        var json = ToJson();
        try
        {
            var options = new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            };
            using var stream = new FileStream(path, options);
            stream.Write(json);
            stream.Flush(flushToDisk: true);
        }
        catch (IOException) when (File.Exists(path))
        {
            throw new MasterSecretException($"master secret file \"{path}\" already exists; refusing to overwrite it");
        }
        finally
        {
            CryptographicOperations.ZeroMemory(json);
        }
    }

    private static string ModeString(UnixFileMode mode) => "0" + Convert.ToString((int)mode & 0x1FF, 8);

    public override string ToString() => "[redacted]";

    public void Dispose()
    {
        _key.Dispose();
        _salt.Dispose();
    }
}

/// <summary>A master secret that cannot be used; the message never contains secret bytes.</summary>
public sealed class MasterSecretException(string message) : Exception(message);
