using System.Globalization;
using System.Text;
using System.Text.Json;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.RepresentationModel;

namespace Asterism.Attestation;

/// <summary>Thrown by <see cref="MeasurementsFormat"/> for any input it cannot accept; the message names the index and field.</summary>
public sealed class MeasurementsFormatException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Reads and writes <see cref="Measurements"/> as YAML or JSON in the form
/// <c>{index: {expected: hex, warnOnly: bool}}</c>; a plain hex string is accepted as an enforced value.
/// Parsing is strict (unknown fields, duplicate indices, bad hex or lengths are errors) and size-limited.
/// </summary>
public static class MeasurementsFormat
{
    /// <summary>Inputs larger than this are refused before parsing.</summary>
    public const int MaxInputBytes = 64 * 1024;

    public static Measurements ParseYaml(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        CheckSize(Encoding.UTF8.GetByteCount(text));
        YamlStream stream = [];
        try
        {
            // YamlDotNet's representation model recurses per nesting level: refuse deep input before it overflows the stack.
            CheckYamlDepth(text);
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw new MeasurementsFormatException($"measurements: invalid YAML at line {e.Start.Line}: {e.Message}", e);
        }
        if (stream.Documents.Count == 0)
        {
            return new Measurements();
        }
        if (stream.Documents.Count > 1)
        {
            throw new MeasurementsFormatException("measurements: expected one YAML document");
        }
        var root = stream.Documents[0].RootNode;
        if (root is YamlScalarNode { Value: null or "" or "~" or "null" })
        {
            return new Measurements();
        }
        if (root is not YamlMappingNode map)
        {
            throw new MeasurementsFormatException("measurements: expected a mapping of index to measurement");
        }
        var entries = new Dictionary<int, Measurement>();
        foreach (var (keyNode, valueNode) in map.Children)
        {
            var index = ParseIndex(keyNode is YamlScalarNode k ? k.Value : null, entries);
            entries[index] = valueNode switch
            {
                YamlScalarNode s => new Measurement(ParseHex(s.Value, index), warnOnly: false),
                YamlMappingNode m => ParseYamlEntry(m, index),
                _ => throw new MeasurementsFormatException($"measurements[{index}]: expected a hex string or a mapping with 'expected' and 'warnOnly'"),
            };
        }
        return new Measurements(entries);
    }

    public static Measurements ParseJson(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        CheckSize(Encoding.UTF8.GetByteCount(text));
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw new MeasurementsFormatException($"measurements: invalid JSON: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind == JsonValueKind.Null)
            {
                return new Measurements();
            }
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new MeasurementsFormatException("measurements: expected an object of index to measurement");
            }
            var entries = new Dictionary<int, Measurement>();
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                var index = ParseIndex(property.Name, entries);
                entries[index] = property.Value.ValueKind switch
                {
                    JsonValueKind.String => new Measurement(ParseHex(property.Value.GetString(), index), warnOnly: false),
                    JsonValueKind.Object => ParseJsonEntry(property.Value, index),
                    _ => throw new MeasurementsFormatException($"measurements[{index}]: expected a hex string or an object with 'expected' and 'warnOnly'"),
                };
            }
            return new Measurements(entries);
        }
    }

    public static string ToYaml(Measurements measurements)
    {
        ArgumentNullException.ThrowIfNull(measurements);
        if (measurements.Count == 0)
        {
            return "{}\n";
        }
        var sb = new StringBuilder();
        foreach (var (index, m) in measurements)
        {
            sb.Append(CultureInfo.InvariantCulture, $"{index}:\n");
            sb.Append(CultureInfo.InvariantCulture, $"  expected: \"{Convert.ToHexStringLower(m.ExpectedSpan)}\"\n");
            sb.Append(CultureInfo.InvariantCulture, $"  warnOnly: {(m.WarnOnly ? "true" : "false")}\n");
        }
        return sb.ToString();
    }

    public static string ToJson(Measurements measurements)
    {
        ArgumentNullException.ThrowIfNull(measurements);
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartObject();
            foreach (var (index, m) in measurements)
            {
                writer.WriteStartObject(index.ToString(CultureInfo.InvariantCulture));
                writer.WriteString("expected", Convert.ToHexStringLower(m.ExpectedSpan));
                writer.WriteBoolean("warnOnly", m.WarnOnly);
                writer.WriteEndObject();
            }
            writer.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>Nesting our format needs: the index mapping and one entry mapping.</summary>
    private const int MaxDepth = 4;

    private static void CheckYamlDepth(string text)
    {
        var parser = new Parser(new StringReader(text));
        var depth = 0;
        while (parser.MoveNext())
        {
            switch (parser.Current)
            {
                case MappingStart or SequenceStart when ++depth > MaxDepth:
                    throw new MeasurementsFormatException($"measurements: YAML nested deeper than {MaxDepth} levels");
                case MappingEnd or SequenceEnd:
                    depth--;
                    break;
            }
        }
    }

    private static Measurement ParseYamlEntry(YamlMappingNode node, int index)
    {
        byte[]? expected = null;
        bool? warnOnly = null;
        foreach (var (keyNode, valueNode) in node.Children)
        {
            var key = (keyNode as YamlScalarNode)?.Value;
            var value = valueNode as YamlScalarNode;
            switch (key)
            {
                case "expected" when expected is null:
                    expected = ParseHex(value?.Value, index);
                    break;
                case "warnOnly" when warnOnly is null:
                    warnOnly = value?.Value switch
                    {
                        "true" or "True" or "TRUE" => true,
                        "false" or "False" or "FALSE" => false,
                        _ => throw new MeasurementsFormatException($"measurements[{index}].warnOnly: expected true or false"),
                    };
                    break;
                case "expected" or "warnOnly":
                    throw new MeasurementsFormatException($"measurements[{index}].{key}: duplicate field");
                default:
                    throw new MeasurementsFormatException($"measurements[{index}]: unknown field '{Truncate(key)}'");
            }
        }
        return new Measurement(expected ?? throw new MeasurementsFormatException($"measurements[{index}].expected: missing"), warnOnly ?? false);
    }

    private static Measurement ParseJsonEntry(JsonElement element, int index)
    {
        byte[]? expected = null;
        bool? warnOnly = null;
        foreach (var p in element.EnumerateObject())
        {
            switch (p.Name)
            {
                case "expected" when expected is null:
                    expected = p.Value.ValueKind == JsonValueKind.String
                        ? ParseHex(p.Value.GetString(), index)
                        : throw new MeasurementsFormatException($"measurements[{index}].expected: expected a hex string");
                    break;
                case "warnOnly" when warnOnly is null:
                    warnOnly = p.Value.ValueKind switch
                    {
                        JsonValueKind.True => true,
                        JsonValueKind.False => false,
                        _ => throw new MeasurementsFormatException($"measurements[{index}].warnOnly: expected true or false"),
                    };
                    break;
                case "expected" or "warnOnly":
                    throw new MeasurementsFormatException($"measurements[{index}].{p.Name}: duplicate field");
                default:
                    throw new MeasurementsFormatException($"measurements[{index}]: unknown field '{Truncate(p.Name)}'");
            }
        }
        return new Measurement(expected ?? throw new MeasurementsFormatException($"measurements[{index}].expected: missing"), warnOnly ?? false);
    }

    private static int ParseIndex(string? key, Dictionary<int, Measurement> seen)
    {
        if (key is null || key.Length is 0 or > 2 || !key.All(char.IsAsciiDigit)
            || !int.TryParse(key, NumberStyles.None, CultureInfo.InvariantCulture, out var index) || index > Measurements.MaxIndex)
        {
            throw new MeasurementsFormatException($"measurements: index '{Truncate(key)}' is not an integer 0-{Measurements.MaxIndex}");
        }
        if (seen.ContainsKey(index))
        {
            throw new MeasurementsFormatException($"measurements[{index}]: duplicate index");
        }
        return index;
    }

    private static byte[] ParseHex(string? hex, int index)
    {
        if (hex is null || hex.Length != Measurement.Length * 2 || !hex.All(char.IsAsciiHexDigit))
        {
            throw new MeasurementsFormatException(
                $"measurements[{index}].expected: expected {Measurement.Length * 2} hex digits ({Measurement.Length} bytes), got {hex?.Length ?? 0} characters");
        }
        return Convert.FromHexString(hex);
    }

    private static void CheckSize(int bytes)
    {
        if (bytes > MaxInputBytes)
        {
            throw new MeasurementsFormatException($"measurements: input of {bytes} bytes exceeds the limit of {MaxInputBytes}");
        }
    }

    private static string Truncate(string? s) => s is null ? "" : s.Length <= 32 ? s : s[..32] + "…";
}
