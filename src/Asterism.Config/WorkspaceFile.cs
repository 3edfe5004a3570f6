using System.Text;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace Asterism.Config;

/// <summary>A workspace file that cannot be used; the message names the file and the field.</summary>
public sealed class WorkspaceFileException(string message) : Exception(message);

/// <summary>A workspace file that checks itself; <see cref="WorkspaceFile"/> validates on every load, parse and save.</summary>
public interface IValidatedWorkspaceFile
{
    /// <summary>Throws <see cref="WorkspaceFileException"/> naming the first invalid field of <paramref name="fileName"/>.</summary>
    void Validate(string fileName);
}

/// <summary>YAML reading and writing shared by the workspace files: camelCase keys, unknown keys rejected.</summary>
public static class WorkspaceFile
{
    /// <summary>Workspace files are small; anything larger is refused before parsing.</summary>
    public const int MaxFileSize = 1024 * 1024;

    private static readonly IDeserializer Deserializer = new DeserializerBuilder()
        .WithNamingConvention(CamelCaseNamingConvention.Instance)
        .WithEnforceRequiredMembers()
        .Build();

    private static readonly ISerializer Serializer = new SerializerBuilder()
        .WithNamingConvention(CamelCaseNamingConvention.Instance)
        .ConfigureDefaultValuesHandling(DefaultValuesHandling.OmitNull)
        .DisableAliases()
        .Build();

    public static T Parse<T>(string yaml, string fileName)
        where T : class
    {
        if (yaml.Length > MaxFileSize)
        {
            throw new WorkspaceFileException($"{fileName}: file is too large ({yaml.Length} bytes, at most {MaxFileSize})");
        }
        try
        {
            return Deserializer.Deserialize<T>(yaml)
                ?? throw new WorkspaceFileException($"{fileName}: file is empty");
        }
        catch (YamlException ex)
        {
            var inner = ex.InnerException is not null and not YamlException ? ": " + ex.InnerException.Message : "";
            var what = ex.Message.Contains("not found on type", StringComparison.Ordinal)
                ? "unknown field " + UnknownProperty(ex.Message)
                : ex.Message.Split('\n')[0] + inner;
            throw new WorkspaceFileException($"{fileName}: line {ex.Start.Line}: {what}");
        }
    }

    private static string UnknownProperty(string message)
    {
        // YamlDotNet: "Property 'foo' not found on type '...'"
        var start = message.IndexOf('\'', StringComparison.Ordinal);
        var end = start >= 0 ? message.IndexOf('\'', start + 1) : -1;
        return end > start ? "\"" + message[(start + 1)..end] + "\"" : "(unnamed)";
    }

    public static string Serialize<T>(T value)
        where T : class => Serializer.Serialize(value);

    public static T Load<T>(string path)
        where T : class
    {
        var name = Path.GetFileName(path);
        if (!File.Exists(path))
        {
            throw new WorkspaceFileException($"{name}: not found in {Path.GetDirectoryName(Path.GetFullPath(path))}");
        }
        var info = new FileInfo(path);
        if (info.Length > MaxFileSize)
        {
            throw new WorkspaceFileException($"{name}: file is too large ({info.Length} bytes, at most {MaxFileSize})");
        }
        return Parse<T>(File.ReadAllText(path, Encoding.UTF8), name);
    }

    /// <summary>Writes through a temporary file and a rename, so a crash leaves the old or the new file.</summary>
    public static void Save<T>(string path, T value)
        where T : class
    {
        var temp = path + ".tmp";
        // Workspace files are the operator's alone (0600), whatever the umask; an old temp file is tightened too.
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }
        using (var stream = new FileStream(temp, options))
        {
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }
            var bytes = Encoding.UTF8.GetBytes(Serialize(value));
            stream.Write(bytes);
            stream.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Loads and validates a workspace file.</summary>
    public static T LoadValidated<T>(string path)
        where T : class, IValidatedWorkspaceFile
    {
        var value = Load<T>(path);
        value.Validate(Path.GetFileName(path));
        return value;
    }

    /// <summary>Parses and validates a workspace file's text.</summary>
    public static T ParseValidated<T>(string yaml, string fileName)
        where T : class, IValidatedWorkspaceFile
    {
        var value = Parse<T>(yaml, fileName);
        value.Validate(fileName);
        return value;
    }

    /// <summary>Validates, then saves atomically.</summary>
    public static void SaveValidated<T>(string path, T value)
        where T : class, IValidatedWorkspaceFile
    {
        value.Validate(Path.GetFileName(path));
        Save(path, value);
    }

    internal static bool IsHex(string? value, int bytes) =>
        value is not null && value.Length == bytes * 2 && value.All(c => c is >= '0' and <= '9' or >= 'a' and <= 'f');
}
