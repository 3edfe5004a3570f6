using System.Text.Json;
using System.Text.Json.Serialization;

namespace Asterism.Cloud;

/// <summary>The one JSON dialect of the local cloud: camelCase, nulls omitted on write, indented files.</summary>
internal static class CloudJson
{
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        WriteIndented = false,
        MaxDepth = 16,
    };

    public static JsonSerializerOptions FileOptions { get; } = new(Options) { WriteIndented = true };

    /// <summary>Writes a file atomically (temp file + rename) so readers never see half a document.</summary>
    public static void WriteFileAtomic<T>(string path, T value)
    {
        var tmp = path + ".tmp-" + Environment.ProcessId;
        OwnerOnly.WriteAllText(tmp, JsonSerializer.Serialize(value, FileOptions) + "\n");
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Reads a bounded JSON file; every failure becomes <see cref="CloudConfigException"/>.</summary>
    public static T ReadFile<T>(string path, int maxBytes)
        where T : class
    {
        byte[] bytes;
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                throw new CloudConfigException($"{path} does not exist");
            }
            if (info.Length > maxBytes)
            {
                throw new CloudConfigException($"{path} is larger than {maxBytes} bytes");
            }
            bytes = File.ReadAllBytes(path);
        }
        catch (IOException e)
        {
            throw new CloudConfigException($"cannot read {path}: {e.Message}");
        }
        catch (UnauthorizedAccessException e)
        {
            throw new CloudConfigException($"cannot read {path}: {e.Message}");
        }
        return Parse<T>(bytes, path);
    }

    public static T Parse<T>(ReadOnlySpan<byte> bytes, string what)
        where T : class
    {
        try
        {
            return JsonSerializer.Deserialize<T>(bytes, Options) ?? throw new CloudConfigException($"{what} is JSON null");
        }
        catch (JsonException e)
        {
            throw new CloudConfigException($"{what} is not valid JSON: {e.Message}");
        }
        catch (NotSupportedException e)
        {
            throw new CloudConfigException($"{what} is not valid JSON: {e.Message}");
        }
    }
}

/// <summary>A workspace file of the local cloud (spec.json, cloud.json, boot-measurements.json) is missing or invalid.</summary>
public class CloudConfigException(string message) : Exception(message);
