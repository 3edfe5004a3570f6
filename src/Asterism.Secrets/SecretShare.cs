using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Asterism.Crypto;

namespace Asterism.Secrets;

/// <summary>
/// One holder's share of a secret, as its share file carries it: format version, cluster ID, the secret's generation
/// (version 2; a version-1 share is of generation 1), index, threshold, share count, the Feldman commitments, the secret sealed under a key only K shares rebuild, and the holder's own share
/// value. Everything but the value is the same in every share of one split. Printed as a description, never the value;
/// <see cref="Dispose"/> zeroes the value.
/// </summary>
public sealed class SecretShare : IDisposable
{
    public const string Format = "asterism-secret-share";
    /// <summary>The version written: 2 adds the master secret's generation (master-secret rotation).</summary>
    public const int CurrentVersion = 2;

    /// <summary>The oldest version still read (a generation-1 split made before rotation existed).</summary>
    public const int OldestVersion = 1;
    public const int MaxShares = 255;
    public const int MaxSecretLength = 4096;

    /// <summary>A share file's plaintext is a few KiB even with 255 commitments.</summary>
    public const int MaxJsonSize = 64 * 1024;

    private readonly byte[] _value;

    internal SecretShare(int version, string clusterId, int generation, int index, int threshold, int count, IReadOnlyList<byte[]> commitments, byte[] nonce, byte[] sealedSecret, byte[] value)
    {
        Version = version;
        ClusterId = clusterId;
        Generation = generation;
        Index = index;
        Threshold = threshold;
        Count = count;
        Commitments = commitments;
        Nonce = nonce;
        SealedSecret = sealedSecret;
        _value = value;
    }

    /// <summary>The share file's format version (1 or 2).</summary>
    public int Version { get; }

    /// <summary>The cluster the secret belongs to: stable across rotations (generation 1's cluster ID).</summary>
    public string ClusterId { get; }

    /// <summary>The master secret's generation (1 for a version-1 share): rotation makes generation 2, 3, ….</summary>
    public int Generation { get; }

    public int Index { get; }

    public int Threshold { get; }

    public int Count { get; }

    public IReadOnlyList<byte[]> Commitments { get; }

    internal byte[] Nonce { get; }

    internal byte[] SealedSecret { get; }

    internal ReadOnlySpan<byte> Value => _value;

    /// <summary>Where the share came from (a file name, "pasted share 2"), for messages; set by the reader.</summary>
    public string? Source { get; set; }

    /// <summary>"share 2 (alice.age)": how messages name this share.</summary>
    public string Describe() => Source is null ? $"share {Index}" : $"share {Index} ({Source})";

    /// <summary>The bytes every share of one split agrees on; sealed as associated data and hashed into <see cref="SplitFingerprint"/>.</summary>
    internal byte[] PublicParameters()
    {
        using var stream = new MemoryStream();
        // Version 1's bytes stay exactly what they were (its sealed secret was made with them); version 2 adds the
        // generation, so a share relabelled to another generation no longer opens its split's sealed secret.
        stream.Write(Encoding.ASCII.GetBytes(Version == 1
            ? $"{Format} v1\n{Feldman.GroupName}\n{ClusterId}\n{Threshold}\n{Count}\n"
            : $"{Format} v{Version}\n{Feldman.GroupName}\n{ClusterId}\ngeneration {Generation}\n{Threshold}\n{Count}\n"));
        foreach (var commitment in Commitments)
        {
            stream.Write(commitment);
        }
        return stream.ToArray();
    }

    /// <summary>SHA-256 over everything but the holder's value: equal for all shares of one split, different for any other split.</summary>
    public string SplitFingerprint
    {
        get
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            hash.AppendData(PublicParameters());
            hash.AppendData(Nonce);
            hash.AppendData(SealedSecret);
            return Convert.ToHexStringLower(hash.GetHashAndReset());
        }
    }

    /// <summary>The share file's plaintext (JSON, UTF-8). The caller zeroes it.</summary>
    public byte[] ToJson()
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartObject();
            writer.WriteString("format", Format);
            writer.WriteNumber("version", Version);
            writer.WriteString("clusterId", ClusterId);
            if (Version >= 2)
            {
                writer.WriteNumber("generation", Generation);
            }
            writer.WriteNumber("index", Index);
            writer.WriteNumber("threshold", Threshold);
            writer.WriteNumber("shares", Count);
            writer.WriteString("group", Feldman.GroupName);
            writer.WriteStartArray("commitments");
            foreach (var commitment in Commitments)
            {
                writer.WriteStringValue(Convert.ToHexStringLower(commitment));
            }
            writer.WriteEndArray();
            writer.WriteString("nonce", Convert.ToHexStringLower(Nonce));
            writer.WriteBase64String("sealedSecret", SealedSecret);
            writer.WriteString("value", Convert.ToHexStringLower(_value));
            writer.WriteEndObject();
        }
        var buffer = stream.GetBuffer();
        var json = stream.ToArray();
        CryptographicOperations.ZeroMemory(buffer);
        return json;
    }

    /// <summary>
    /// Parses a share file's plaintext. Every problem (wrong format or version, missing or malformed field, threshold
    /// out of range, commitment not a group point) is a <see cref="ShareException"/> naming it, never echoing the value.
    /// </summary>
    public static SecretShare Parse(ReadOnlySpan<byte> json)
    {
        if (json.Length > MaxJsonSize)
        {
            throw new ShareException($"larger than {MaxJsonSize} bytes: not a share");
        }
        if (!System.Text.Unicode.Utf8.IsValid(json))
        {
            throw new ShareException("not valid UTF-8: not an Asterism secret share");
        }
        var copy = json.ToArray();
        try
        {
            using var document = JsonDocument.Parse(copy, new JsonDocumentOptions { MaxDepth = 4 });
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("format", out var format) || format.ValueKind != JsonValueKind.String || format.GetString() != Format)
            {
                throw new ShareException("not an Asterism secret share");
            }
            var version = Integer(root, "version", 1, int.MaxValue);
            if (version is < OldestVersion or > CurrentVersion)
            {
                throw new ShareException($"share format version {version} is not supported (this asterism reads versions {OldestVersion} to {CurrentVersion})");
            }
            if (version == 1 && root.TryGetProperty("generation", out _))
            {
                throw new ShareException("a version-1 share has no field \"generation\"");
            }
            var generation = version == 1 ? 1 : Integer(root, "generation", 1, KeyDerivation.MaxGeneration);
            if (Text(root, "group") != Feldman.GroupName)
            {
                throw new ShareException($"group must be {Feldman.GroupName}");
            }
            var clusterId = Text(root, "clusterId");
            if (clusterId.Length != 64 || !clusterId.All(char.IsAsciiHexDigitLower))
            {
                throw new ShareException("clusterId must be 64 lowercase hex digits");
            }
            var count = Integer(root, "shares", 2, MaxShares);
            var threshold = Integer(root, "threshold", 2, count);
            var index = Integer(root, "index", 1, count);
            if (!root.TryGetProperty("commitments", out var list) || list.ValueKind != JsonValueKind.Array || list.GetArrayLength() != threshold)
            {
                throw new ShareException($"commitments must be an array of {threshold} points (one per coefficient)");
            }
            var commitments = new List<byte[]>(threshold);
            foreach (var item in list.EnumerateArray())
            {
                var point = item.ValueKind == JsonValueKind.String ? Hex(item.GetString()!, Feldman.PointSize) : null;
                if (point is null || !Feldman.IsValidCommitment(point))
                {
                    throw new ShareException($"commitment {commitments.Count} is not a {Feldman.GroupName} point");
                }
                commitments.Add(point);
            }
            var nonce = Hex(Text(root, "nonce"), 12) ?? throw new ShareException("nonce must be 24 hex digits");
            if (!root.TryGetProperty("sealedSecret", out var sealedElement) || sealedElement.ValueKind != JsonValueKind.String
                || !sealedElement.TryGetBytesFromBase64(out var sealedSecret) || sealedSecret.Length < 16 || sealedSecret.Length > MaxSecretLength + 16)
            {
                throw new ShareException("sealedSecret must be base64 of the sealed secret");
            }
            var value = Hex(Text(root, "value"), Feldman.ScalarSize) ?? throw new ShareException("value must be 64 hex digits");
            return new SecretShare(version, clusterId, generation, index, threshold, count, commitments, nonce, sealedSecret, value);
        }
        catch (JsonException)
        {
            throw new ShareException("not valid JSON: not an Asterism secret share");
        }
        catch (InvalidOperationException)
        {
            // GetString on a string with an escaped lone surrogate ("\ud800"): valid JSON, not valid text.
            throw new ShareException("a string field is not valid Unicode: not an Asterism secret share");
        }
        finally
        {
            CryptographicOperations.ZeroMemory(copy);
        }
    }

    private static string Text(JsonElement root, string name) =>
        root.TryGetProperty(name, out var element) && element.ValueKind == JsonValueKind.String
            ? element.GetString()!
            : throw new ShareException($"field \"{name}\" is missing or not a string");

    private static int Integer(JsonElement root, string name, int min, int max)
    {
        if (!root.TryGetProperty(name, out var element) || element.ValueKind != JsonValueKind.Number || !element.TryGetInt32(out var value))
        {
            throw new ShareException($"field \"{name}\" is missing or not an integer");
        }
        if (value < min || value > max)
        {
            throw new ShareException($"field \"{name}\" is {value}, outside {min}..{max}");
        }
        return value;
    }

    private static byte[]? Hex(string text, int length)
    {
        if (text.Length != length * 2 || !text.All(char.IsAsciiHexDigitLower))
        {
            return null;
        }
        return Convert.FromHexString(text);
    }

    public override string ToString() => $"{Describe()} of {Count}, threshold {Threshold}, cluster {ClusterId}, generation {Generation}";

    public void Dispose() => CryptographicOperations.ZeroMemory(_value);
}

/// <summary>A share that cannot be used, or shares that cannot be combined; the message names the share, never its value.</summary>
public sealed class ShareException(string message) : Exception(message);
