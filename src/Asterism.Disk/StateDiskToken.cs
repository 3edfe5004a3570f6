using System.Text.Json;

namespace Asterism.Disk;

/// <summary>
/// Token 0 of a state disk: <c>{"type":"asterism-state-disk","keyslots":[],"diskIsInitialized":BOOL}</c>, key order
/// exactly so. A malformed token of this type is refused (never read as "not initialized", which would invite a
/// reformat).
/// </summary>
public static class StateDiskToken
{
    /// <summary>The token type.</summary>
    public const string Type = "asterism-state-disk";

    /// <summary>The token id used by Asterism.</summary>
    public const int Id = 0;

    /// <summary>Serialises the token.</summary>
    public static string Serialize(bool initialized) =>
        "{\"type\":\"" + Type + "\",\"keyslots\":[],\"diskIsInitialized\":" + (initialized ? "true" : "false") + "}";

    /// <summary>True when <paramref name="rawJson"/> (already validated token JSON) has type asterism-state-disk.</summary>
    public static bool IsStateDiskToken(string rawJson)
    {
        try
        {
            using var doc = JsonDocument.Parse(rawJson, new JsonDocumentOptions { MaxDepth = 16 });
            return doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String && t.GetString() == Type;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>Reads diskIsInitialized; throws <see cref="Luks2HeaderException"/> (InvalidToken) when malformed.</summary>
    public static bool Parse(string rawJson)
    {
        try
        {
            using var doc = JsonDocument.Parse(rawJson, new JsonDocumentOptions { MaxDepth = 4 });
            var root = doc.RootElement;
            var names = root.EnumerateObject().Select(p => p.Name).ToList();
            if (!names.SequenceEqual(["type", "keyslots", "diskIsInitialized"])
                || root.GetProperty("type").GetString() != Type
                || root.GetProperty("keyslots").ValueKind != JsonValueKind.Array
                || root.GetProperty("keyslots").GetArrayLength() != 0)
            {
                throw new Luks2HeaderException(Luks2HeaderError.InvalidToken, "the asterism-state-disk token has unexpected fields");
            }
            var flag = root.GetProperty("diskIsInitialized");
            return flag.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new Luks2HeaderException(Luks2HeaderError.InvalidToken, "diskIsInitialized is not a boolean"),
            };
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException)
        {
            throw new Luks2HeaderException(Luks2HeaderError.InvalidToken, "the asterism-state-disk token does not parse", e);
        }
    }
}
