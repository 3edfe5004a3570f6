using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Asterism.Attestation;
using Asterism.Crypto;
using Asterism.JoinService;
using Asterism.Node.State;

namespace Asterism.Node;

/// <summary>
/// What a node keeps on its state filesystem about itself: role, measurement salt and cluster ID
/// (<c>asterism/node_state.json</c>); control-plane nodes also keep the cluster secrets
/// (<c>asterism/master_secret.json</c>, <c>asterism/attestation_policy.json</c>). The cluster ID lets a node check
/// a pushed measurement secret before accepting it. Every file is written atomically and durably, 0600.
/// </summary>
public sealed class NodeState
{
    /// <summary>Bound on the node state file: it is a few hundred bytes; anything larger is not ours.</summary>
    private const int MaxFileBytes = 64 * 1024;

    public required NodeRole Role { get; init; }

    public required string NodeName { get; init; }

    public required byte[] MeasurementSalt { get; init; }

    public required byte[] ClusterId { get; init; }


    /// <summary>
    /// The master-secret generation keyslot 0's key comes from (1 until a rotation; written before the keyslot moves, so
    /// after a crash between the two the keyslot may still hold the previous generation's key).
    /// </summary>
    public int KeyGeneration { get; init; } = 1;

    /// <summary>
    /// DeriveKeyCheck of generation <see cref="KeyGeneration"/>'s master secret, what a delivered measurement secret
    /// may derive; null means the cluster ID (generation 1).
    /// </summary>
    public byte[]? KeyCheck { get; init; }

    /// <summary>The key check of the generation before <see cref="KeyGeneration"/>, kept while the keyslot may still hold its key.</summary>
    public byte[]? PreviousKeyCheck { get; init; }

    /// <summary>The key check a delivered measurement secret is compared against: <see cref="KeyCheck"/>, or the cluster ID.</summary>
    public byte[] EffectiveKeyCheck => KeyCheck ?? ClusterId;

    /// <summary>
    /// True when <paramref name="measurementSecret"/> derives the cluster ID, <see cref="KeyCheck"/> or
    /// <see cref="PreviousKeyCheck"/> (every comparison made, each constant-time).
    /// </summary>
    public bool AcceptsMeasurementSecret(ReadOnlySpan<byte> measurementSecret)
    {
        var derived = KeyDerivation.DeriveClusterId(measurementSecret, MeasurementSalt);
        var accepted = CryptographicOperations.FixedTimeEquals(derived, ClusterId);
        accepted |= CryptographicOperations.FixedTimeEquals(derived, EffectiveKeyCheck);
        accepted |= PreviousKeyCheck is not null && CryptographicOperations.FixedTimeEquals(derived, PreviousKeyCheck);
        return accepted;
    }

    /// <summary>
    /// This state moved to <paramref name="generation"/> with <paramref name="keyCheck"/>; the current check becomes the
    /// previous one — unless the state already names <paramref name="generation"/> (a rerun after a crash), which keeps
    /// the previous check it recorded then.
    /// </summary>
    public NodeState WithKeyGeneration(int generation, byte[] keyCheck)
    {
        ArgumentNullException.ThrowIfNull(keyCheck);
        ArgumentOutOfRangeException.ThrowIfLessThan(generation, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(generation, KeyDerivation.MaxGeneration);
        if (keyCheck.Length != KeyDerivation.KeyLength)
        {
            throw new ArgumentException("a key check is 32 bytes", nameof(keyCheck));
        }
        return new NodeState
        {
            Role = Role,
            NodeName = NodeName,
            MeasurementSalt = MeasurementSalt,
            ClusterId = ClusterId,
            KeyGeneration = generation,
            KeyCheck = (byte[])keyCheck.Clone(),
            PreviousKeyCheck = generation == KeyGeneration ? PreviousKeyCheck : EffectiveKeyCheck,
        };
    }

    /// <summary>Writes the node state to <paramref name="state"/> (atomic, durable).</summary>
    public void WriteTo(NodeStateDirectory state)
    {
        var json = new JsonObject
        {
            ["role"] = Role.Name(),
            ["nodeName"] = NodeName,
            ["measurementSalt"] = Convert.ToBase64String(MeasurementSalt),
            ["clusterID"] = Convert.ToHexStringLower(ClusterId),
            ["keyGeneration"] = KeyGeneration,
            ["keyCheck"] = Convert.ToHexStringLower(EffectiveKeyCheck),
        };
        if (PreviousKeyCheck is not null)
        {
            json["previousKeyCheck"] = Convert.ToHexStringLower(PreviousKeyCheck);
        }
        state.Write(NodeStateDirectory.NodeStateFile, JsonSerializer.SerializeToUtf8Bytes(json));
    }

    /// <summary>Reads the node state; throws <see cref="InvalidDataException"/> when it is missing or malformed.</summary>
    public static NodeState Read(NodeStateDirectory state)
    {
        var bytes = ReadBounded(state, NodeStateDirectory.NodeStateFile) ?? throw new InvalidDataException("the state filesystem holds no node state");
        try
        {
            var json = JsonNode.Parse(bytes)!.AsObject();
            if (!NodeRoles.TryParse(json["role"]?.GetValue<string>(), out var role))
            {
                throw new InvalidDataException("node state: unknown role");
            }
            var salt = Convert.FromBase64String(json["measurementSalt"]!.GetValue<string>());
            var clusterId = Convert.FromHexString(json["clusterID"]!.GetValue<string>());
            if (salt.Length != KeyDerivation.MeasurementSaltLength || clusterId.Length != KeyDerivation.KeyLength)
            {
                throw new InvalidDataException("node state: measurement salt and cluster ID must be 32 bytes");
            }
            // Rotation fields (absent in a state written before rotation existed: generation 1, check = cluster ID).
            var generation = json["keyGeneration"]?.GetValue<int>() ?? 1;
            if (generation < 1 || generation > KeyDerivation.MaxGeneration)
            {
                throw new InvalidDataException("node state: keyGeneration out of range");
            }
            var keyCheck = OptionalCheck(json, "keyCheck");
            var previous = OptionalCheck(json, "previousKeyCheck");
            return new NodeState
            {
                Role = role,
                NodeName = json["nodeName"]?.GetValue<string>() ?? "",
                MeasurementSalt = salt,
                ClusterId = clusterId,
                KeyGeneration = generation,
                KeyCheck = keyCheck,
                PreviousKeyCheck = previous,
            };
        }
        catch (Exception ex) when (ex is JsonException or FormatException or InvalidOperationException or NullReferenceException or ArgumentException)
        {
            throw new InvalidDataException("node state is malformed");
        }
    }

    private static byte[]? OptionalCheck(JsonObject json, string name)
    {
        if (json[name]?.GetValue<string>() is not { } hex)
        {
            return null;
        }
        var check = hex.Length == 2 * KeyDerivation.KeyLength ? Convert.FromHexString(hex) : null;
        return check ?? throw new InvalidDataException($"node state: {name} must be 32 bytes");
    }

    /// <summary>Writes the control-plane secrets (<see cref="ClusterSecretFiles.Write"/>: each file atomic and durable, 0600).</summary>
    public static void WriteClusterSecrets(NodeStateDirectory state, ClusterSecrets secrets) => ClusterSecretFiles.Write(state, secrets);

    /// <summary>Reads the control-plane secrets with their generation (<see cref="ClusterSecretFiles.Read"/>).</summary>
    public static ClusterSecrets ReadClusterSecrets(NodeStateDirectory state, NodeState node) => ClusterSecretFiles.Read(state, node);

    /// <summary>Reads a file below the state root, refusing one over 64 KiB; null when it does not exist.</summary>
    internal static byte[]? ReadBounded(NodeStateDirectory state, string relative)
    {
        var info = new FileInfo(state.PathOf(relative));
        if (info.Exists && info.Length > MaxFileBytes)
        {
            throw new InvalidDataException($"{relative} is larger than {MaxFileBytes} bytes");
        }
        return state.ReadOrNull(relative);
    }
}
