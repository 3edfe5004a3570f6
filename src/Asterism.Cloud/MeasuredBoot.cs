using System.Security.Cryptography;
using System.Text;

namespace Asterism.Cloud;

/// <summary>One measured-boot event: the digest extended into a PCR (PCR = SHA-256(PCR ‖ digest)).</summary>
public sealed record BootEvent
{
    public int Pcr { get; init; }

    /// <summary>Lower-case hex SHA-256.</summary>
    public string Digest { get; init; } = "";

    public string Description { get; init; } = "";
}

/// <summary>boot-measurements.json: the events the firmware (the provider) measured before starting a node.</summary>
public sealed record BootMeasurements
{
    public IReadOnlyList<BootEvent> Events { get; init; } = [];
}

/// <summary>
/// The local provider's measured boot (ARCHITECTURE §7). Acting as firmware it measures, before every start,
/// PCR 4 ← SHA-256 of the node binary and PCR 9 ← SHA-256 of the instance-independent boot arguments, so all
/// nodes of a cluster share the same expected PCR values and a changed binary or argument changes them.
/// </summary>
public static class MeasuredBoot
{
    public const string FileName = "boot-measurements.json";
    public const int NodeBinaryPcr = 4;
    public const int BootArgumentsPcr = 9;

    /// <summary>The init target's init configuration (the init secret's hash); no other node has it.</summary>
    public const int InitSecretPcr = 12;
    private const int MaxFileBytes = 64 * 1024;
    private const int MaxEvents = 64;
    private const string ArgumentsDomain = "asterism-boot-arguments-v1";

    /// <summary>The events of one instance's boot: the spec's events, and the init configuration for the init target.</summary>
    public static IReadOnlyList<BootEvent> ComputeEvents(Local.BootContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var events = ComputeEvents(context.Spec);
        return Local.NodeProvisioning.InitSecretEvent(context.Spec, context.Instance) is { } init ? [.. events, init] : events;
    }

    /// <summary>The events for a spec: reads and hashes the node binary (throws <see cref="CloudConfigException"/> if unreadable).</summary>
    public static IReadOnlyList<BootEvent> ComputeEvents(CloudSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        return ComputeEvents(spec.NodeCommand, spec.NodeArgs, spec.Variant);
    }

    public static IReadOnlyList<BootEvent> ComputeEvents(IReadOnlyList<string> nodeCommand, IReadOnlyList<string> nodeArgs, string variant)
    {
        ArgumentNullException.ThrowIfNull(nodeCommand);
        ArgumentNullException.ThrowIfNull(nodeArgs);
        ArgumentNullException.ThrowIfNull(variant);
        var binary = NodeBinaryPath(nodeCommand);
        byte[] binaryDigest;
        try
        {
            using var stream = File.OpenRead(binary);
            binaryDigest = SHA256.HashData(stream);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CloudConfigException($"cannot measure node binary {binary}: {e.Message}");
        }
        return
        [
            new BootEvent { Pcr = NodeBinaryPcr, Digest = Convert.ToHexStringLower(binaryDigest), Description = "node binary" },
            new BootEvent { Pcr = BootArgumentsPcr, Digest = Convert.ToHexStringLower(BootArgumentsDigest(variant, nodeArgs)), Description = "boot arguments" },
        ];
    }

    /// <summary>
    /// The file measured into PCR 4: the last element of the command ending in ".dll" (a framework-dependent
    /// node run by `dotnet`), otherwise the executable itself (resolved through PATH when it has no directory).
    /// </summary>
    public static string NodeBinaryPath(IReadOnlyList<string> nodeCommand)
    {
        ArgumentNullException.ThrowIfNull(nodeCommand);
        if (nodeCommand.Count == 0)
        {
            throw new CloudConfigException("nodeCommand is empty");
        }
        var dll = nodeCommand.LastOrDefault(a => a.EndsWith(".dll", StringComparison.OrdinalIgnoreCase));
        return Path.GetFullPath(dll ?? ResolveExecutable(nodeCommand[0]));
    }

    /// <summary>
    /// SHA-256 over "asterism-boot-arguments-v1", the variant and every node argument, each followed by a NUL byte.
    /// Arguments cannot contain NUL, so the encoding is unambiguous. Name, address and paths are not included.
    /// </summary>
    public static byte[] BootArgumentsDigest(string variant, IReadOnlyList<string> nodeArgs)
    {
        ArgumentNullException.ThrowIfNull(variant);
        ArgumentNullException.ThrowIfNull(nodeArgs);
        var text = new StringBuilder();
        foreach (var part in new[] { ArgumentsDomain, "variant=" + variant }.Concat(nodeArgs))
        {
            if (part.Contains('\0', StringComparison.Ordinal))
            {
                throw new ArgumentException("boot arguments must not contain NUL", nameof(nodeArgs));
            }
            text.Append(part).Append('\0');
        }
        return SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString()));
    }

    /// <summary>The PCR values after extending the events, in order, into a bank of zeros (touched PCRs only).</summary>
    public static IReadOnlyDictionary<int, byte[]> ExpectedPcrs(IEnumerable<BootEvent> events)
    {
        ArgumentNullException.ThrowIfNull(events);
        var pcrs = new SortedDictionary<int, byte[]>();
        foreach (var e in events)
        {
            var digest = DecodeDigest(e);
            var current = pcrs.TryGetValue(e.Pcr, out var v) ? v : new byte[32];
            pcrs[e.Pcr] = SHA256.HashData([.. current, .. digest]);
        }
        return pcrs;
    }

    /// <summary>Writes boot-measurements.json atomically.</summary>
    public static void Write(string path, IReadOnlyList<BootEvent> events) =>
        CloudJson.WriteFileAtomic(path, new BootMeasurements { Events = events });

    /// <summary>Reads and validates boot-measurements.json (size-limited; PCR 0-23, 32-byte hex digests); throws <see cref="CloudConfigException"/>.</summary>
    public static BootMeasurements Read(string path)
    {
        var m = CloudJson.ReadFile<BootMeasurements>(path, MaxFileBytes);
        if (m.Events is null || m.Events.Count > MaxEvents)
        {
            throw new CloudConfigException($"{path}: events missing or more than {MaxEvents}");
        }
        foreach (var e in m.Events)
        {
            if (e is null)
            {
                throw new CloudConfigException($"{path}: null event");
            }
            DecodeDigest(e);
        }
        return m;
    }

    private static byte[] DecodeDigest(BootEvent e)
    {
        if (e.Pcr is < 0 or > 23)
        {
            throw new CloudConfigException($"PCR index {e.Pcr} out of range 0-23");
        }
        if (e.Digest is not { Length: 64 } || !e.Digest.All(char.IsAsciiHexDigit))
        {
            throw new CloudConfigException($"digest for PCR {e.Pcr} is not 64 hex characters");
        }
        return Convert.FromHexString(e.Digest);
    }

    private static string ResolveExecutable(string command)
    {
        if (command.Contains('/', StringComparison.Ordinal))
        {
            return command;
        }
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, command);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new CloudConfigException($"node command '{command}' not found in PATH");
    }
}
