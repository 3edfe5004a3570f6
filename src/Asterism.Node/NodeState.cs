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

    /// <summary>Writes the node state to <paramref name="state"/> (atomic, durable).</summary>
    public void WriteTo(NodeStateDirectory state)
    {
        var json = new JsonObject
        {
            ["role"] = Role.Name(),
            ["nodeName"] = NodeName,
            ["measurementSalt"] = Convert.ToBase64String(MeasurementSalt),
            ["clusterID"] = Convert.ToHexStringLower(ClusterId),
        };
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
            return new NodeState { Role = role, NodeName = json["nodeName"]?.GetValue<string>() ?? "", MeasurementSalt = salt, ClusterId = clusterId };
        }
        catch (Exception ex) when (ex is JsonException or FormatException or InvalidOperationException or NullReferenceException)
        {
            throw new InvalidDataException("node state is malformed");
        }
    }

    /// <summary>Writes the control-plane secrets (each file atomic and durable, 0600).</summary>
    public static void WriteClusterSecrets(NodeStateDirectory state, ClusterSecrets secrets)
    {
        var master = secrets.MasterSecret.ToJson();
        try
        {
            state.Write(NodeStateDirectory.MasterSecretFile, master);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(master);
        }
        state.Write(NodeStateDirectory.PolicyFile, secrets.Policy.ToJson());
    }

    public static ClusterSecrets ReadClusterSecrets(NodeStateDirectory state, NodeState node)
    {
        var master = ReadBounded(state, NodeStateDirectory.MasterSecretFile) ?? throw new InvalidDataException("the state filesystem holds no master secret");
        try
        {
            var policy = ReadBounded(state, NodeStateDirectory.PolicyFile) ?? throw new InvalidDataException("the state filesystem holds no attestation policy");
            return new ClusterSecrets(MasterSecret.Parse(master), node.MeasurementSalt, AttestationPolicy.FromJson(policy));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(master);
        }
    }

    private static byte[]? ReadBounded(NodeStateDirectory state, string relative)
    {
        var info = new FileInfo(state.PathOf(relative));
        if (info.Exists && info.Length > MaxFileBytes)
        {
            throw new InvalidDataException($"{relative} is larger than {MaxFileBytes} bytes");
        }
        return state.ReadOrNull(relative);
    }
}
