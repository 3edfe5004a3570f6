using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Asterism.Attestation;
using Asterism.Crypto;
using Asterism.Disk;
using Asterism.JoinService;

namespace Asterism.Node;

/// <summary>
/// What a node keeps on its unlocked state disk about itself: role, measurement salt and cluster ID (record
/// <c>asterism/node_state.json</c>); control-plane nodes also keep the cluster secrets
/// (<c>asterism/master_secret.json</c>, <c>asterism/attestation_policy.json</c>). The cluster ID lets a node check
/// a pushed measurement secret before accepting it.
/// </summary>
public sealed class NodeState
{
    public const string StateRecord = "asterism/node_state.json";
    public const string MasterSecretRecord = "asterism/master_secret.json";
    public const string PolicyRecord = "asterism/attestation_policy.json";

    public required NodeRole Role { get; init; }

    public required string NodeName { get; init; }

    public required byte[] MeasurementSalt { get; init; }

    public required byte[] ClusterId { get; init; }

    /// <summary>Adds the node state to <paramref name="batch"/>.</summary>
    public void AddTo(RecordBatch batch)
    {
        var json = new JsonObject
        {
            ["role"] = Role.Name(),
            ["nodeName"] = NodeName,
            ["measurementSalt"] = Convert.ToBase64String(MeasurementSalt),
            ["clusterID"] = Convert.ToHexStringLower(ClusterId),
        };
        batch.Put(StateRecord, JsonSerializer.SerializeToUtf8Bytes(json));
    }

    /// <summary>Reads the node state; throws <see cref="InvalidDataException"/> when it is missing or malformed.</summary>
    public static NodeState Read(RecordStore store)
    {
        var bytes = store.Get(StateRecord) ?? throw new InvalidDataException("the state disk holds no node state");
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

    /// <summary>Adds the control-plane secrets to <paramref name="batch"/>.</summary>
    public static void AddClusterSecrets(RecordBatch batch, ClusterSecrets secrets)
    {
        var master = secrets.MasterSecret.ToJson();
        try
        {
            batch.Put(MasterSecretRecord, master);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(master);
        }
        batch.Put(PolicyRecord, secrets.Policy.ToJson());
    }

    public static ClusterSecrets ReadClusterSecrets(RecordStore store, NodeState state)
    {
        var master = store.Get(MasterSecretRecord) ?? throw new InvalidDataException("the state disk holds no master secret");
        try
        {
            var policy = store.Get(PolicyRecord) ?? throw new InvalidDataException("the state disk holds no attestation policy");
            return new ClusterSecrets(MasterSecret.Parse(master), state.MeasurementSalt, AttestationPolicy.FromJson(policy));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(master);
        }
    }
}
