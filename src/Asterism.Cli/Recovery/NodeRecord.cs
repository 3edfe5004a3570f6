using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Asterism.Crypto;

namespace Asterism.Cli.Recovery;

/// <summary>One node as `init` recorded it.</summary>
public sealed record RecordedNode(string Name, string Role, string DiskUuid);

/// <summary>
/// asterism-nodes.json: every node of the cluster with its role and the disk UUID its certified identity owns,
/// written by `init` and MAC'd (HMAC-SHA256) with a key derived from the master secret. `recover` pushes a key only
/// to an attested identity whose reported disk is the one recorded for it, so a tampered record (a swapped UUID, an
/// added node) is refused before anything is sent; only a holder of the master secret can write a valid one.
/// </summary>
public sealed class NodeRecord
{
    public const string FileName = "asterism-nodes.json";

    /// <summary>
    /// The same record MAC'd under the next generation's secret, written when a rotation begins (the new secret is in
    /// memory then, even when it goes to shares only) and moved over <see cref="FileName"/> when it completes.
    /// </summary>
    public const string NextFileName = "asterism-nodes.next.json";
    private const string MacKeyId = "asterism-node-record-v1";
    private const int MaxFileBytes = 256 * 1024;
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase, WriteIndented = true };

    public NodeRecord(IReadOnlyList<RecordedNode> nodes)
    {
        ArgumentNullException.ThrowIfNull(nodes);
        Nodes = nodes;
    }

    public IReadOnlyList<RecordedNode> Nodes { get; }

    public RecordedNode? Find(string name) => Nodes.FirstOrDefault(n => n.Name == name);

    /// <summary>Writes the record with its MAC (mode 0600, atomically).</summary>
    public void Save(string path, MasterSecret master)
    {
        var file = new RecordFile { Version = 1, Nodes = [.. Nodes], Mac = Convert.ToHexStringLower(Mac(master, Nodes)) };
        Asterism.Attestation.Identities.IdentityFiles.WritePrivateFile(path, JsonSerializer.SerializeToUtf8Bytes(file, Json));
    }

    /// <summary>Loads and authenticates the record; every problem is a <see cref="CliError"/> naming the file.</summary>
    public static NodeRecord Load(string path, MasterSecret master)
    {
        if (!File.Exists(path))
        {
            throw new CliError($"node record {path} does not exist: 'asterism init' writes it; without it recover cannot tell which disk belongs to which node");
        }
        RecordFile? file;
        try
        {
            var info = new FileInfo(path);
            if (info.Length > MaxFileBytes)
            {
                throw new CliError($"node record {path} is larger than {MaxFileBytes} bytes");
            }
            file = JsonSerializer.Deserialize<RecordFile>(File.ReadAllBytes(path), Json);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            throw new CliError($"node record {path} cannot be read: {e.GetType().Name}");
        }
        if (file is null || file.Version != 1 || file.Nodes is null || file.Mac is null || file.Nodes.Any(n => n is null))
        {
            throw new CliError($"node record {path} is malformed");
        }
        var nodes = file.Nodes.Select(n => n!).ToList();
        byte[] mac;
        try
        {
            mac = Convert.FromHexString(file.Mac);
        }
        catch (FormatException)
        {
            throw new CliError($"node record {path} is malformed (mac)");
        }
        if (!CryptographicOperations.FixedTimeEquals(mac, Mac(master, nodes)))
        {
            throw new CliError($"node record {path} was modified or belongs to another master secret (its MAC does not verify); refusing to recover with it");
        }
        return new NodeRecord(nodes);
    }

    /// <summary>
    /// The record verified with any of <paramref name="masters"/> (each a secret of this cluster, of the current or the
    /// pending generation): <paramref name="path"/> first, then <paramref name="nextPath"/> when it exists — a rotation
    /// moves the record from one MAC key to the other, and a crash may leave either file under either key. Refused as
    /// <see cref="Load"/> refuses when no secret verifies either file.
    /// </summary>
    public static NodeRecord LoadAny(string path, string nextPath, IReadOnlyList<MasterSecret> masters)
    {
        ArgumentNullException.ThrowIfNull(masters);
        CliError? first = null;
        foreach (var candidate in File.Exists(nextPath) ? new[] { path, nextPath } : [path])
        {
            foreach (var master in masters)
            {
                try
                {
                    return Load(candidate, master);
                }
                catch (CliError e)
                {
                    first ??= e;
                }
            }
        }
        throw first ?? new CliError($"node record {path} cannot be verified: no master secret given");
    }

    private static byte[] Mac(MasterSecret master, IReadOnlyList<RecordedNode> nodes)
    {
        var canonical = new StringBuilder("v1\n");
        foreach (var n in nodes)
        {
            canonical.Append(n.Name).Append('\0').Append(n.Role).Append('\0').Append(n.DiskUuid).Append('\n');
        }
        using var key = KeyDerivation.DeriveKey(master.Key, master.Salt, MacKeyId);
        return HMACSHA256.HashData(key.Span, Encoding.UTF8.GetBytes(canonical.ToString()));
    }

    private sealed class RecordFile
    {
        public int Version { get; set; }

        public List<RecordedNode?>? Nodes { get; set; }

        public string? Mac { get; set; }

        [JsonExtensionData]
        public Dictionary<string, JsonElement>? Unknown { get; set; }
    }
}
