using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Asterism.Disk;

/// <summary>Key derivation parameters of a keyslot.</summary>
/// <param name="Type">"pbkdf2", "argon2i" or "argon2id".</param>
/// <param name="Iterations">PBKDF2 iterations, or Argon2 time cost.</param>
/// <param name="MemoryKiB">Argon2 memory in KiB (0 for PBKDF2).</param>
/// <param name="Parallelism">Argon2 lanes (0 for PBKDF2).</param>
/// <param name="Salt">KDF salt.</param>
public sealed record Luks2Kdf(string Type, int Iterations, int MemoryKiB, int Parallelism, byte[] Salt)
{
    /// <summary>True for argon2i / argon2id.</summary>
    public bool IsArgon2 => Type is "argon2i" or "argon2id";
}

/// <summary>A keyslot: 64-byte key, LUKS1 AF (4000 stripes, sha256), aes-xts-plain64 area.</summary>
/// <param name="Id">Keyslot number (0-31).</param>
/// <param name="AreaOffset">Byte offset of the encrypted AF material.</param>
/// <param name="AreaSize">Area size in bytes.</param>
/// <param name="Kdf">Passphrase KDF.</param>
/// <param name="Priority">Optional priority (0 ignore, 1 normal, 2 high); null when absent.</param>
public sealed record Luks2Keyslot(int Id, long AreaOffset, long AreaSize, Luks2Kdf Kdf, int? Priority);

/// <summary>The PBKDF2-SHA256 digest of the volume key.</summary>
public sealed record Luks2Digest(int Id, IReadOnlyList<int> Keyslots, int Iterations, byte[] Salt, byte[] Value);

/// <summary>
/// The JSON metadata of a LUKS2 header, restricted to what Asterism accepts: one dynamic crypt segment with
/// aes-xts-plain64 / 4096-byte sectors, luks2 keyslots, one pbkdf2-sha256 digest. Tokens are kept as raw JSON so
/// tokens written by other tools survive rewrites.
/// </summary>
public sealed class Luks2Metadata
{
    /// <summary>Cipher of segment and keyslot areas.</summary>
    public const string Cipher = "aes-xts-plain64";

    /// <summary>Volume key and keyslot area key size in bytes.</summary>
    public const int KeyBytes = 64;

    /// <summary>Anti-forensic stripes.</summary>
    public const int Stripes = 4000;

    /// <summary>Payload sector size.</summary>
    public const int SectorSize = 4096;

    /// <summary>Highest PBKDF2 iteration count accepted (a hostile header must not make us spin for minutes).</summary>
    public const int MaxPbkdf2Iterations = 20_000_000;

    /// <summary>Lowest iteration count accepted (cryptsetup's minimum).</summary>
    public const int MinPbkdf2Iterations = 1000;

    /// <summary>Highest Argon2 memory accepted: 1 GiB, cryptsetup's default maximum.</summary>
    public const int MaxArgon2MemoryKiB = 1024 * 1024;

    /// <summary>
    /// Highest Argon2 time cost × memory (KiB) of one keyslot: 16 GiB-passes. A per-slot cap whatever budget a caller
    /// passes; the default per-header budget (<see cref="Luks2KdfCost.DefaultHeaderBudget"/>) is lower still.
    /// </summary>
    public const long MaxArgon2Work = 16L * 1024 * 1024;

    /// <summary>Highest Argon2 lane count accepted.</summary>
    public const int MaxArgon2Parallelism = 16;

    internal const int MaxJsonDepth = 12;
    internal const int MaxSlots = 32;

    private static readonly string[] TopLevel = ["keyslots", "tokens", "segments", "digests", "config"];
    private static readonly HashSet<string> KnownConfigFlags = new(StringComparer.Ordinal)
    {
        "allow-discards", "same-cpu-crypt", "submit-from-crypt-cpus", "no-journal",
        "no-read-workqueue", "no-write-workqueue",
    };

    /// <summary>Keyslots by id, ascending.</summary>
    public required SortedDictionary<int, Luks2Keyslot> Keyslots { get; init; }

    /// <summary>Tokens by id as raw JSON objects.</summary>
    public required SortedDictionary<int, string> Tokens { get; init; }

    /// <summary>Byte offset of the payload (segment 0).</summary>
    public required long SegmentOffset { get; init; }

    /// <summary>The volume key digest.</summary>
    public required Luks2Digest Digest { get; set; }

    /// <summary>Size of the JSON area (header size − 4096).</summary>
    public required long JsonSize { get; init; }

    /// <summary>Size of the keyslot area after the two header copies.</summary>
    public required long KeyslotsSize { get; init; }

    /// <summary>Persistent activation flags (config.flags), kept verbatim.</summary>
    public required IReadOnlyList<string> ConfigFlags { get; init; }

    /// <summary>Bytes of AF material of one keyslot (64 × 4000).</summary>
    public static long AfMaterialSize => (long)KeyBytes * Stripes;

    /// <summary>A deep copy.</summary>
    public Luks2Metadata Clone() => new()
    {
        Keyslots = new SortedDictionary<int, Luks2Keyslot>(Keyslots),
        Tokens = new SortedDictionary<int, string>(Tokens),
        SegmentOffset = SegmentOffset,
        Digest = Digest,
        JsonSize = JsonSize,
        KeyslotsSize = KeyslotsSize,
        ConfigFlags = ConfigFlags,
    };

    /// <summary>Parses and validates JSON metadata; throws <see cref="Luks2HeaderException"/> on anything unexpected.</summary>
    public static Luks2Metadata Parse(ReadOnlySpan<byte> json, long headerSize) => Parse(json, headerSize, Luks2KdfCost.DefaultHeaderBudget);

    /// <summary>
    /// Parses and validates JSON metadata, refusing it when trying every keyslot would cost more than
    /// <paramref name="kdfBudget"/> units (<see cref="Luks2KdfCost"/>); throws <see cref="Luks2HeaderException"/>.
    /// </summary>
    public static Luks2Metadata Parse(ReadOnlySpan<byte> json, long headerSize, long kdfBudget)
    {
        JsonDocument doc;
        try
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = MaxJsonDepth, CommentHandling = JsonCommentHandling.Disallow });
            if (!JsonDocument.TryParseValue(ref reader, out var parsed) || parsed is null)
            {
                throw Fail(Luks2HeaderError.MalformedJson, "the JSON area is empty");
            }
            doc = parsed;
            if (reader.Read())
            {
                doc.Dispose();
                throw Fail(Luks2HeaderError.MalformedJson, "trailing data after the JSON object");
            }
        }
        catch (JsonException e)
        {
            throw new Luks2HeaderException(Luks2HeaderError.MalformedJson, "the JSON area does not parse", e);
        }
        using (doc)
        {
            try
            {
                return Build(doc.RootElement, headerSize, kdfBudget);
            }
            catch (Exception e) when (e is not Luks2HeaderException)
            {
                throw new Luks2HeaderException(Luks2HeaderError.MalformedJson, "unexpected JSON value", e);
            }
        }
    }

    private static Luks2Metadata Build(JsonElement root, long headerSize, long kdfBudget)
    {
        var top = Fields(root, "metadata", TopLevel, TopLevel);

        var config = Fields(top["config"], "config", ["json_size", "keyslots_size"], ["json_size", "keyslots_size", "flags", "requirements"]);
        if (config.ContainsKey("requirements"))
        {
            throw Fail(Luks2HeaderError.UnsupportedRequirement, "config.requirements is set (e.g. reencryption in progress)");
        }
        var jsonSize = ParseSize(config["json_size"], "config.json_size");
        if (jsonSize != headerSize - 4096)
        {
            throw Fail(Luks2HeaderError.InvalidBinaryHeader, "config.json_size does not match the header size");
        }
        var keyslotsSize = ParseSize(config["keyslots_size"], "config.keyslots_size");
        if (keyslotsSize % 4096 != 0 || keyslotsSize > 128L * 1024 * 1024)
        {
            throw Fail(Luks2HeaderError.InvalidArea, "config.keyslots_size is misaligned or larger than 128 MiB");
        }
        var flags = new List<string>();
        if (config.TryGetValue("flags", out var flagsElement))
        {
            foreach (var f in Array(flagsElement, "config.flags", 16))
            {
                var name = Str(f, "config.flags[]");
                if (!KnownConfigFlags.Contains(name))
                {
                    throw Fail(Luks2HeaderError.UnknownField, $"unknown config flag '{Clip(name)}'");
                }
                flags.Add(name);
            }
        }

        var areaStart = 2 * headerSize;
        var areaEnd = areaStart + keyslotsSize;

        var segments = Fields(top["segments"], "segments", ["0"], ["0"]);
        var seg = Fields(segments["0"], "segments.0", ["type", "offset", "size", "iv_tweak", "encryption", "sector_size"],
            ["type", "offset", "size", "iv_tweak", "encryption", "sector_size", "integrity", "flags"]);
        if (seg.ContainsKey("integrity"))
        {
            throw Fail(Luks2HeaderError.UnsupportedIntegrity, "segment 0 uses dm-integrity");
        }
        if (seg.ContainsKey("flags"))
        {
            throw Fail(Luks2HeaderError.UnsupportedSegment, "segment 0 carries flags (reencryption)");
        }
        Expect(seg["type"], "crypt", Luks2HeaderError.UnsupportedSegment, "segments.0.type");
        Expect(seg["encryption"], Cipher, Luks2HeaderError.UnsupportedCipher, "segments.0.encryption");
        if (Int(seg["sector_size"], "segments.0.sector_size") != SectorSize)
        {
            throw Fail(Luks2HeaderError.UnsupportedSectorSize, "segment sector size is not 4096");
        }
        Expect(seg["size"], "dynamic", Luks2HeaderError.UnsupportedSegment, "segments.0.size");
        Expect(seg["iv_tweak"], "0", Luks2HeaderError.UnsupportedSegment, "segments.0.iv_tweak");
        var segmentOffset = ParseSize(seg["offset"], "segments.0.offset");
        if (segmentOffset % 4096 != 0 || segmentOffset < areaEnd)
        {
            throw Fail(Luks2HeaderError.InvalidArea, "segment 0 starts inside the metadata or keyslot area or is misaligned");
        }

        var keyslots = new SortedDictionary<int, Luks2Keyslot>();
        foreach (var (idText, ks) in Entries(top["keyslots"], "keyslots"))
        {
            var id = SlotId(idText, "keyslot");
            keyslots.Add(id, ParseKeyslot(id, ks, areaStart, areaEnd));
        }
        if (keyslots.Count == 0)
        {
            throw Fail(Luks2HeaderError.NoKeyslot, "the header has no keyslot");
        }
        var areas = keyslots.Values.OrderBy(k => k.AreaOffset).ToList();
        for (var i = 1; i < areas.Count; i++)
        {
            if (areas[i - 1].AreaOffset + areas[i - 1].AreaSize > areas[i].AreaOffset)
            {
                throw Fail(Luks2HeaderError.OverlappingAreas, $"keyslot areas {areas[i - 1].Id} and {areas[i].Id} overlap");
            }
        }

        var digests = Entries(top["digests"], "digests").ToList();
        if (digests.Count != 1)
        {
            throw Fail(Luks2HeaderError.UnsupportedDigest, "expected exactly one digest");
        }
        var digest = ParseDigest(SlotId(digests[0].Key, "digest"), digests[0].Value);
        if (!digest.Keyslots.Order().SequenceEqual(keyslots.Keys))
        {
            throw Fail(Luks2HeaderError.UnsupportedDigest, "the digest does not cover exactly the keyslots");
        }
        // Per-slot bounds above cap each KDF; this caps their sum, which is what a hostile header with 32 slots
        // at the per-slot maximum would otherwise make a key attempt spend.
        Luks2KdfCost.Check(keyslots.Values, digest, kdfBudget);

        var tokens = new SortedDictionary<int, string>();
        foreach (var (idText, token) in Entries(top["tokens"], "tokens"))
        {
            var id = SlotId(idText, "token");
            tokens.Add(id, ValidateToken(token, keyslots));
        }

        return new Luks2Metadata
        {
            Keyslots = keyslots,
            Tokens = tokens,
            SegmentOffset = segmentOffset,
            Digest = digest,
            JsonSize = jsonSize,
            KeyslotsSize = keyslotsSize,
            ConfigFlags = flags,
        };
    }

    private static Luks2Keyslot ParseKeyslot(int id, JsonElement element, long areaStart, long areaEnd)
    {
        var name = $"keyslots.{id}";
        var ks = Fields(element, name, ["type", "key_size", "af", "area", "kdf"], ["type", "key_size", "af", "area", "kdf", "priority"]);
        Expect(ks["type"], "luks2", Luks2HeaderError.UnsupportedKeyslot, name + ".type");
        if (Int(ks["key_size"], name + ".key_size") != KeyBytes)
        {
            throw Fail(Luks2HeaderError.UnsupportedCipher, $"{name}.key_size is not 64");
        }
        int? priority = null;
        if (ks.TryGetValue("priority", out var p))
        {
            priority = Int(p, name + ".priority");
            if (priority is < 0 or > 2)
            {
                throw Fail(Luks2HeaderError.UnsupportedKeyslot, $"{name}.priority out of range");
            }
        }
        var af = Fields(ks["af"], name + ".af", ["type", "stripes", "hash"], ["type", "stripes", "hash"]);
        Expect(af["type"], "luks1", Luks2HeaderError.UnsupportedKeyslot, name + ".af.type");
        Expect(af["hash"], "sha256", Luks2HeaderError.UnsupportedKeyslot, name + ".af.hash");
        if (Int(af["stripes"], name + ".af.stripes") != Stripes)
        {
            throw Fail(Luks2HeaderError.UnsupportedKeyslot, $"{name}.af.stripes is not 4000");
        }
        var area = Fields(ks["area"], name + ".area", ["type", "offset", "size", "encryption", "key_size"], ["type", "offset", "size", "encryption", "key_size"]);
        Expect(area["type"], "raw", Luks2HeaderError.UnsupportedKeyslot, name + ".area.type");
        Expect(area["encryption"], Cipher, Luks2HeaderError.UnsupportedCipher, name + ".area.encryption");
        if (Int(area["key_size"], name + ".area.key_size") != KeyBytes)
        {
            throw Fail(Luks2HeaderError.UnsupportedCipher, $"{name}.area.key_size is not 64");
        }
        var offset = ParseSize(area["offset"], name + ".area.offset");
        var size = ParseSize(area["size"], name + ".area.size");
        if (offset % 4096 != 0 || size % 4096 != 0 || size < AfMaterialSize || offset < areaStart || offset > areaEnd - size)
        {
            throw Fail(Luks2HeaderError.InvalidArea, $"{name}.area is misaligned, too small or outside the keyslot area");
        }
        return new Luks2Keyslot(id, offset, size, ParseKdf(ks["kdf"], name + ".kdf"), priority);
    }

    private static Luks2Kdf ParseKdf(JsonElement element, string name)
    {
        if (element.ValueKind != JsonValueKind.Object || !element.TryGetProperty("type", out var typeElement))
        {
            throw Fail(Luks2HeaderError.MissingField, name + ".type");
        }
        var type = Str(typeElement, name + ".type");
        switch (type)
        {
            case "pbkdf2":
                {
                    var kdf = Fields(element, name, ["type", "hash", "iterations", "salt"], ["type", "hash", "iterations", "salt"]);
                    Expect(kdf["hash"], "sha256", Luks2HeaderError.UnsupportedKdf, name + ".hash");
                    var iterations = Int(kdf["iterations"], name + ".iterations");
                    if (iterations is < MinPbkdf2Iterations or > MaxPbkdf2Iterations)
                    {
                        throw Fail(Luks2HeaderError.UnsupportedKdf, $"{name}.iterations outside [{MinPbkdf2Iterations}, {MaxPbkdf2Iterations}]");
                    }
                    return new Luks2Kdf(type, iterations, 0, 0, Salt(kdf["salt"], name + ".salt", 16, 64));
                }
            case "argon2i":
            case "argon2id":
                {
                    var kdf = Fields(element, name, ["type", "time", "memory", "cpus", "salt"], ["type", "time", "memory", "cpus", "salt"]);
                    var time = Int(kdf["time"], name + ".time");
                    var memory = Int(kdf["memory"], name + ".memory");
                    var cpus = Int(kdf["cpus"], name + ".cpus");
                    if (time < 1 || cpus < 1 || cpus > MaxArgon2Parallelism || memory < 8 * cpus || memory > MaxArgon2MemoryKiB
                        || (long)time * memory > MaxArgon2Work)
                    {
                        throw Fail(Luks2HeaderError.UnsupportedKdf, $"{name} parameters outside the accepted bounds (memory ≤ 1 GiB, time × memory ≤ 16 GiB, lanes ≤ 16)");
                    }
                    return new Luks2Kdf(type, time, memory, cpus, Salt(kdf["salt"], name + ".salt", 16, 64));
                }
            default:
                throw Fail(Luks2HeaderError.UnsupportedKdf, $"{name}.type '{Clip(type)}' is not pbkdf2, argon2i or argon2id");
        }
    }

    private static Luks2Digest ParseDigest(int id, JsonElement element)
    {
        var name = $"digests.{id}";
        var d = Fields(element, name, ["type", "keyslots", "segments", "hash", "iterations", "salt", "digest"],
            ["type", "keyslots", "segments", "hash", "iterations", "salt", "digest"]);
        Expect(d["type"], "pbkdf2", Luks2HeaderError.UnsupportedDigest, name + ".type");
        Expect(d["hash"], "sha256", Luks2HeaderError.UnsupportedDigest, name + ".hash");
        var iterations = Int(d["iterations"], name + ".iterations");
        if (iterations is < MinPbkdf2Iterations or > MaxPbkdf2Iterations)
        {
            throw Fail(Luks2HeaderError.UnsupportedDigest, $"{name}.iterations outside the accepted bounds");
        }
        var segments = Array(d["segments"], name + ".segments", 1).Select(s => Str(s, name + ".segments[]")).ToList();
        if (segments.Count != 1 || segments[0] != "0")
        {
            throw Fail(Luks2HeaderError.UnsupportedDigest, $"{name} must cover exactly segment 0");
        }
        var slots = new List<int>();
        foreach (var s in Array(d["keyslots"], name + ".keyslots", MaxSlots))
        {
            var slot = SlotId(Str(s, name + ".keyslots[]"), "digest keyslot");
            if (slots.Contains(slot))
            {
                throw Fail(Luks2HeaderError.UnsupportedDigest, $"{name}.keyslots has duplicates");
            }
            slots.Add(slot);
        }
        return new Luks2Digest(id, slots, iterations, Salt(d["salt"], name + ".salt", 16, 64), Salt(d["digest"], name + ".digest", 32, 32));
    }

    /// <summary>Validates one token's JSON (size, depth, type, keyslot references) and returns its raw text.</summary>
    internal static string ValidateTokenJson(string raw, SortedDictionary<int, Luks2Keyslot> keyslots)
    {
        if (raw.Length > 8192)
        {
            throw Fail(Luks2HeaderError.InvalidToken, "the token is larger than 8 KiB");
        }
        try
        {
            using var doc = JsonDocument.Parse(raw, new JsonDocumentOptions { MaxDepth = MaxJsonDepth - 2 });
            return ValidateToken(doc.RootElement, keyslots);
        }
        catch (JsonException e)
        {
            throw new Luks2HeaderException(Luks2HeaderError.InvalidToken, "the token does not parse", e);
        }
    }

    private static string ValidateToken(JsonElement token, SortedDictionary<int, Luks2Keyslot> keyslots)
    {
        if (token.ValueKind != JsonValueKind.Object)
        {
            throw Fail(Luks2HeaderError.InvalidToken, "a token is not an object");
        }
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in token.EnumerateObject())
        {
            if (!names.Add(p.Name))
            {
                throw Fail(Luks2HeaderError.MalformedJson, "duplicate key in a token");
            }
        }
        if (!token.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString()!.Length is 0 or > 64)
        {
            throw Fail(Luks2HeaderError.InvalidToken, "a token has no valid type");
        }
        if (!token.TryGetProperty("keyslots", out var slots) || slots.ValueKind != JsonValueKind.Array)
        {
            throw Fail(Luks2HeaderError.InvalidToken, "a token has no keyslots array");
        }
        foreach (var s in slots.EnumerateArray())
        {
            if (s.ValueKind != JsonValueKind.String || !int.TryParse(s.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out var slot)
                || !keyslots.ContainsKey(slot))
            {
                throw Fail(Luks2HeaderError.InvalidToken, "a token references a keyslot that does not exist");
            }
        }
        if (type.GetString() == StateDiskToken.Type)
        {
            _ = StateDiskToken.Parse(token.GetRawText());
        }
        return token.GetRawText();
    }

    /// <summary>Serialises the metadata in cryptsetup's field order (compact JSON).</summary>
    public byte[] ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteStartObject("keyslots");
            foreach (var ks in Keyslots.Values)
            {
                w.WriteStartObject(Id(ks.Id));
                w.WriteString("type", "luks2");
                w.WriteNumber("key_size", KeyBytes);
                w.WriteStartObject("af");
                w.WriteString("type", "luks1");
                w.WriteNumber("stripes", Stripes);
                w.WriteString("hash", "sha256");
                w.WriteEndObject();
                w.WriteStartObject("area");
                w.WriteString("type", "raw");
                w.WriteString("offset", Id(ks.AreaOffset));
                w.WriteString("size", Id(ks.AreaSize));
                w.WriteString("encryption", Cipher);
                w.WriteNumber("key_size", KeyBytes);
                w.WriteEndObject();
                w.WriteStartObject("kdf");
                w.WriteString("type", ks.Kdf.Type);
                if (ks.Kdf.IsArgon2)
                {
                    w.WriteNumber("time", ks.Kdf.Iterations);
                    w.WriteNumber("memory", ks.Kdf.MemoryKiB);
                    w.WriteNumber("cpus", ks.Kdf.Parallelism);
                }
                else
                {
                    w.WriteString("hash", "sha256");
                    w.WriteNumber("iterations", ks.Kdf.Iterations);
                }
                w.WriteString("salt", Convert.ToBase64String(ks.Kdf.Salt));
                w.WriteEndObject();
                if (ks.Priority is { } priority)
                {
                    w.WriteNumber("priority", priority);
                }
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteStartObject("tokens");
            foreach (var (id, raw) in Tokens)
            {
                w.WritePropertyName(Id(id));
                w.WriteRawValue(raw, skipInputValidation: false);
            }
            w.WriteEndObject();
            w.WriteStartObject("segments");
            w.WriteStartObject("0");
            w.WriteString("type", "crypt");
            w.WriteString("offset", Id(SegmentOffset));
            w.WriteString("size", "dynamic");
            w.WriteString("iv_tweak", "0");
            w.WriteString("encryption", Cipher);
            w.WriteNumber("sector_size", SectorSize);
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteStartObject("digests");
            w.WriteStartObject(Id(Digest.Id));
            w.WriteString("type", "pbkdf2");
            w.WriteStartArray("keyslots");
            foreach (var k in Digest.Keyslots.Order())
            {
                w.WriteStringValue(Id(k));
            }
            w.WriteEndArray();
            w.WriteStartArray("segments");
            w.WriteStringValue("0");
            w.WriteEndArray();
            w.WriteString("hash", "sha256");
            w.WriteNumber("iterations", Digest.Iterations);
            w.WriteString("salt", Convert.ToBase64String(Digest.Salt));
            w.WriteString("digest", Convert.ToBase64String(Digest.Value));
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteStartObject("config");
            w.WriteString("json_size", Id(JsonSize));
            w.WriteString("keyslots_size", Id(KeyslotsSize));
            if (ConfigFlags.Count > 0)
            {
                w.WriteStartArray("flags");
                foreach (var f in ConfigFlags)
                {
                    w.WriteStringValue(f);
                }
                w.WriteEndArray();
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return ms.ToArray();
    }

    private static string Id(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static Luks2HeaderException Fail(Luks2HeaderError reason, string message) => new(reason, message);

    private static string Clip(string s) => s.Length <= 32 ? s : s[..32] + "…";

    private static Dictionary<string, JsonElement> Fields(JsonElement element, string name, string[] required, string[] allowed)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw Fail(Luks2HeaderError.MissingField, $"{name} is not an object");
        }
        var result = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var p in element.EnumerateObject())
        {
            if (!allowed.Contains(p.Name, StringComparer.Ordinal))
            {
                throw Fail(Luks2HeaderError.UnknownField, $"unknown field '{Clip(p.Name)}' in {name}");
            }
            if (!result.TryAdd(p.Name, p.Value))
            {
                throw Fail(Luks2HeaderError.MalformedJson, $"duplicate field '{p.Name}' in {name}");
            }
        }
        foreach (var r in required)
        {
            if (!result.ContainsKey(r))
            {
                throw Fail(Luks2HeaderError.MissingField, $"{name}.{r} is missing");
            }
        }
        return result;
    }

    private static IEnumerable<KeyValuePair<string, JsonElement>> Entries(JsonElement element, string name)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw Fail(Luks2HeaderError.MissingField, $"{name} is not an object");
        }
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var list = new List<KeyValuePair<string, JsonElement>>();
        foreach (var p in element.EnumerateObject())
        {
            if (!seen.Add(p.Name))
            {
                throw Fail(Luks2HeaderError.MalformedJson, $"duplicate id '{Clip(p.Name)}' in {name}");
            }
            if (list.Count >= MaxSlots)
            {
                throw Fail(Luks2HeaderError.MalformedJson, $"too many entries in {name}");
            }
            list.Add(new(p.Name, p.Value));
        }
        return list;
    }

    private static int SlotId(string text, string what)
    {
        if (text.Length is 0 or > 2 || (text.Length > 1 && text[0] == '0')
            || !int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var id) || id >= MaxSlots)
        {
            throw Fail(Luks2HeaderError.MalformedJson, $"invalid {what} id '{Clip(text)}'");
        }
        return id;
    }

    private static IEnumerable<JsonElement> Array(JsonElement element, string name, int max)
    {
        if (element.ValueKind != JsonValueKind.Array)
        {
            throw Fail(Luks2HeaderError.MissingField, $"{name} is not an array");
        }
        if (element.GetArrayLength() > max)
        {
            throw Fail(Luks2HeaderError.MalformedJson, $"{name} has too many entries");
        }
        return element.EnumerateArray().ToList();
    }

    private static string Str(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.String ? element.GetString()! : throw Fail(Luks2HeaderError.MissingField, $"{name} is not a string");

    private static int Int(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Number && element.TryGetInt32(out var v)
            ? v
            : throw Fail(Luks2HeaderError.MissingField, $"{name} is not a 32-bit integer");

    private static void Expect(JsonElement element, string expected, Luks2HeaderError reason, string name)
    {
        var value = Str(element, name);
        if (!string.Equals(value, expected, StringComparison.Ordinal))
        {
            throw Fail(reason, $"{name} is '{Clip(value)}', expected '{expected}'");
        }
    }

    private static long ParseSize(JsonElement element, string name)
    {
        var text = Str(element, name);
        if (text.Length is 0 or > 18 || !text.All(char.IsAsciiDigit) || (text.Length > 1 && text[0] == '0'))
        {
            throw Fail(Luks2HeaderError.MalformedJson, $"{name} is not a decimal size");
        }
        return long.Parse(text, NumberStyles.None, CultureInfo.InvariantCulture);
    }

    private static byte[] Salt(JsonElement element, string name, int min, int max)
    {
        var text = Str(element, name);
        var buffer = new byte[(text.Length / 4 * 3) + 3];
        if (text.Length > 128 || !Convert.TryFromBase64String(text, buffer, out var n) || n < min || n > max)
        {
            throw Fail(Luks2HeaderError.MalformedJson, $"{name} is not base64 of {min}-{max} bytes");
        }
        return buffer[..n];
    }

    internal static string Utf8(ReadOnlySpan<byte> bytes) => Encoding.UTF8.GetString(bytes);
}
