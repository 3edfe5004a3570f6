using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Asterism.Attestation.Identities;
using Asterism.ControlPlane;
using Asterism.Crypto;

namespace Asterism.Cli.Recovery;

/// <summary>One node of the registry as the workspace copy holds it.</summary>
/// <param name="Role">"control-plane" or "worker"; empty for a revocation the CLI recorded before it could list the registry.</param>
/// <param name="DiskUuid">The disk the registry names for the node, or empty when unknown.</param>
public sealed record CopiedNode(string Name, string Role, string DiskUuid, bool Revoked, long RevokedAtUnixMs);

/// <summary>
/// The workspace's copy of the node registry and its deny-list (<c>admin/registry.json</c>, 0600 in the 0700 admin
/// folder), so that <c>recover</c> refuses a revoked node even when the whole control plane, and with it etcd, is down.
/// The copy is authenticated with HMAC-SHA256 under <c>HKDF(master secret, "key-asterism-registry-copy-v1")</c> and
/// carries the cluster ID and a sequence number that grows with every write; <c>admin/registry.head</c> holds the
/// highest sequence written (MAC'd alike), so an older copy put back in place of a newer one is refused.
/// </summary>
/// <remarks>
/// Who can write it: whoever holds the MAC key. The key is derived from the master secret, but the CLI writes the copy
/// when no secret is at hand (`node revoke` in a workspace initialized with `--shares` has only shares, held by other
/// people), so `init` stores the derived key in <c>admin/registry-mac.key</c> (0600) next to the admin credential. The
/// key is one-way from the master secret and opens no disk. `recover` verifies with the key it derives again from the
/// secret (or shares) it was given, never with the stored one, so a copy made under any other key is refused. The
/// attacker we design against cannot read the workspace; one who can also holds the admin credential and, without
/// shares, the master secret itself.
/// </remarks>
public sealed class RegistryCopy : IRecoveryDenyList
{
    /// <summary>The copy's file name in the admin folder.</summary>
    public const string FileName = "registry.json";

    /// <summary>The high-water mark's file name in the admin folder.</summary>
    public const string HeadFileName = "registry.head";

    /// <summary>The stored MAC key's file name in the admin folder.</summary>
    public const string KeyFileName = "registry-mac.key";

    /// <summary>The HKDF label of the MAC key (its own: no other key is derived with it).</summary>
    public const string MacKeyId = "asterism-registry-copy-v1";

    /// <summary>More nodes than any local cluster has; bounds the parser's work.</summary>
    public const int MaxNodes = 4096;

    internal const int MaxFileBytes = 1024 * 1024;
    private const int MaxHeadBytes = 4 * 1024;
    // Unknown members are refused: a misspelt "revoked" would otherwise read as false and, on a node that was not
    // revoked, still verify; strictness keeps "one changed byte = refused" simple to state and to test.
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase, WriteIndented = true, UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow };

    public RegistryCopy(string clusterId, long sequence, long writtenAtUnixMs, IReadOnlyList<CopiedNode> nodes, string path = FileName)
    {
        ArgumentNullException.ThrowIfNull(clusterId);
        ArgumentNullException.ThrowIfNull(nodes);
        ClusterId = clusterId;
        Sequence = sequence;
        WrittenAtUnixMs = writtenAtUnixMs;
        Nodes = [.. nodes.OrderBy(n => n.Name, StringComparer.Ordinal)];
        Path = path;
    }

    /// <summary>The cluster the copy belongs to (hex, as in asterism-state.yaml).</summary>
    public string ClusterId { get; }

    /// <summary>Grows by at least one with every write of this workspace.</summary>
    public long Sequence { get; }

    /// <summary>When the copy was written (the CLI's clock, for the operator only).</summary>
    public long WrittenAtUnixMs { get; }

    /// <summary>Every node, sorted by name.</summary>
    public IReadOnlyList<CopiedNode> Nodes { get; }

    /// <summary>The file the copy was read from (for messages).</summary>
    public string Path { get; }

    /// <summary>The names of the revoked nodes.</summary>
    public IEnumerable<string> Revoked => Nodes.Where(n => n.Revoked).Select(n => n.Name);

    /// <inheritdoc />
    public string? Denies(string nodeName, string diskUuid)
    {
        var revoked = Nodes.FirstOrDefault(n => n.Revoked && (n.Name == nodeName || (diskUuid.Length > 0 && n.DiskUuid == diskUuid)));
        if (revoked is null)
        {
            return null;
        }
        var when = revoked.RevokedAtUnixMs > 0
            ? " on " + DateTimeOffset.FromUnixTimeMilliseconds(revoked.RevokedAtUnixMs).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture)
            : "";
        var which = revoked.Name == nodeName ? nodeName : $"{nodeName} (its disk {diskUuid} belongs to revoked {revoked.Name})";
        return $"{which} is revoked{when} (registry copy {Path}, sequence {Sequence}); it keeps waiting";
    }

    /// <summary>The MAC key: HKDF of the master secret with this copy's own label.</summary>
    public static SecretBytes DeriveMacKey(MasterSecret master)
    {
        ArgumentNullException.ThrowIfNull(master);
        return KeyDerivation.DeriveKey(master.Key, master.Salt, MacKeyId);
    }

    /// <summary>The file's bytes with their MAC under <paramref name="macKey"/>.</summary>
    public byte[] Serialize(ReadOnlySpan<byte> macKey)
    {
        var file = new CopyFile
        {
            Version = 1,
            ClusterId = ClusterId,
            Sequence = Sequence,
            WrittenAtUnixMs = WrittenAtUnixMs,
            Nodes = [.. Nodes],
            Mac = Convert.ToHexStringLower(Mac(macKey, ClusterId, Sequence, WrittenAtUnixMs, Nodes)),
        };
        return JsonSerializer.SerializeToUtf8Bytes(file, Json);
    }

    /// <summary>
    /// Parses and authenticates a copy; a malformed file or a MAC that does not verify is a
    /// <see cref="RegistryCopyException"/> (the caller names the file and what it refuses).
    /// </summary>
    public static RegistryCopy Parse(ReadOnlySpan<byte> bytes, ReadOnlySpan<byte> macKey, string path)
    {
        if (bytes.Length > MaxFileBytes)
        {
            throw new RegistryCopyException($"is larger than {MaxFileBytes} bytes");
        }
        CopyFile? file;
        try
        {
            file = JsonSerializer.Deserialize<CopyFile>(bytes, Json);
        }
        catch (JsonException)
        {
            throw new RegistryCopyException("is not valid JSON");
        }
        if (file is null || file.Version != 1 || file.ClusterId is not { Length: > 0 and <= 128 } || file.Nodes is null || file.Mac is null || file.Sequence < 1)
        {
            throw new RegistryCopyException("is malformed (version, clusterId, sequence, nodes or mac missing)");
        }
        if (file.Nodes.Count > MaxNodes)
        {
            throw new RegistryCopyException($"lists more than {MaxNodes} nodes");
        }
        var nodes = new List<CopiedNode>(file.Nodes.Count);
        foreach (var n in file.Nodes)
        {
            if (n is null || !NodeNames.IsValid(n.Name) || n.Role is null || n.Role.Length > 32 || n.DiskUuid is null
                || (n.DiskUuid.Length > 0 && !KeyDerivation.IsCanonicalDiskUuid(n.DiskUuid)))
            {
                throw new RegistryCopyException("is malformed (a node entry)");
            }
            nodes.Add(n);
        }
        if (nodes.Select(n => n.Name).Distinct(StringComparer.Ordinal).Count() != nodes.Count)
        {
            throw new RegistryCopyException("is malformed (a node is listed twice)");
        }
        byte[] mac;
        try
        {
            mac = Convert.FromHexString(file.Mac);
        }
        catch (FormatException)
        {
            throw new RegistryCopyException("is malformed (mac)");
        }
        var copy = new RegistryCopy(file.ClusterId, file.Sequence, file.WrittenAtUnixMs, nodes, path);
        if (!CryptographicOperations.FixedTimeEquals(mac, Mac(macKey, copy.ClusterId, copy.Sequence, copy.WrittenAtUnixMs, copy.Nodes)))
        {
            throw new RegistryCopyException("was modified or belongs to another master secret (its MAC does not verify)", tampered: true);
        }
        return copy;
    }

    /// <summary>The head file's bytes: the highest sequence written, MAC'd.</summary>
    public static byte[] SerializeHead(long sequence, ReadOnlySpan<byte> macKey) =>
        JsonSerializer.SerializeToUtf8Bytes(new HeadFile { Version = 1, Sequence = sequence, Mac = Convert.ToHexStringLower(HeadMac(macKey, sequence)) }, Json);

    /// <summary>Parses and authenticates a head file (see <see cref="Parse"/>).</summary>
    public static long ParseHead(ReadOnlySpan<byte> bytes, ReadOnlySpan<byte> macKey)
    {
        if (bytes.Length > MaxHeadBytes)
        {
            throw new RegistryCopyException($"is larger than {MaxHeadBytes} bytes");
        }
        HeadFile? file;
        try
        {
            file = JsonSerializer.Deserialize<HeadFile>(bytes, Json);
        }
        catch (JsonException)
        {
            throw new RegistryCopyException("is not valid JSON");
        }
        if (file is null || file.Version != 1 || file.Sequence < 1 || file.Mac is null)
        {
            throw new RegistryCopyException("is malformed");
        }
        byte[] mac;
        try
        {
            mac = Convert.FromHexString(file.Mac);
        }
        catch (FormatException)
        {
            throw new RegistryCopyException("is malformed (mac)");
        }
        if (!CryptographicOperations.FixedTimeEquals(mac, HeadMac(macKey, file.Sequence)))
        {
            throw new RegistryCopyException("was modified or belongs to another master secret (its MAC does not verify)", tampered: true);
        }
        return file.Sequence;
    }

    /// <summary>
    /// HMAC over an unambiguous encoding: a domain label, then every field length-prefixed, nodes in name order. JSON
    /// formatting, field order and unknown fields do not matter; every value that does is covered.
    /// </summary>
    private static byte[] Mac(ReadOnlySpan<byte> macKey, string clusterId, long sequence, long writtenAt, IReadOnlyList<CopiedNode> nodes)
    {
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, macKey);
        AppendString(hmac, "asterism-registry-copy-v1");
        AppendString(hmac, clusterId);
        AppendLong(hmac, sequence);
        AppendLong(hmac, writtenAt);
        AppendLong(hmac, nodes.Count);
        foreach (var n in nodes.OrderBy(n => n.Name, StringComparer.Ordinal))
        {
            AppendString(hmac, n.Name);
            AppendString(hmac, n.Role);
            AppendString(hmac, n.DiskUuid);
            AppendLong(hmac, n.Revoked ? 1 : 0);
            AppendLong(hmac, n.RevokedAtUnixMs);
        }
        return hmac.GetHashAndReset();
    }

    private static byte[] HeadMac(ReadOnlySpan<byte> macKey, long sequence)
    {
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, macKey);
        AppendString(hmac, "asterism-registry-head-v1");
        AppendLong(hmac, sequence);
        return hmac.GetHashAndReset();
    }

    private static void AppendString(IncrementalHash hmac, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        AppendLong(hmac, bytes.Length);
        hmac.AppendData(bytes);
    }

    private static void AppendLong(IncrementalHash hmac, long value)
    {
        Span<byte> buffer = stackalloc byte[8];
        BinaryPrimitives.WriteInt64BigEndian(buffer, value);
        hmac.AppendData(buffer);
    }

    private sealed class CopyFile
    {
        public int Version { get; set; }

        public string? ClusterId { get; set; }

        public long Sequence { get; set; }

        public long WrittenAtUnixMs { get; set; }

        public List<CopiedNode?>? Nodes { get; set; }

        public string? Mac { get; set; }
    }

    private sealed class HeadFile
    {
        public int Version { get; set; }

        public long Sequence { get; set; }

        public string? Mac { get; set; }
    }
}

/// <summary>A registry copy or head file that does not parse or does not verify; the message completes "FILE …".</summary>
public sealed class RegistryCopyException(string message, bool tampered = false) : Exception(message)
{
    /// <summary>The MAC did not verify (as opposed to a file that does not parse).</summary>
    public bool Tampered { get; } = tampered;
}
