using System.Text.Json;
using System.Text.Json.Serialization;
using Etcdserverpb;

namespace Asterism.ControlPlane;

/// <summary>A node's role; it comes from the node's certified identity, never from a request.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<NodeRole>))]
public enum NodeRole
{
    /// <summary>Runs an etcd member and a JoinService.</summary>
    ControlPlane,

    /// <summary>Runs workloads only.</summary>
    Worker,
}

/// <summary>One node in the registry.</summary>
/// <param name="Name">Node name (the etcd key).</param>
/// <param name="Role">Role from the certified identity.</param>
/// <param name="DiskUuid">The LUKS2 state disk's UUID: its key is released only to this node.</param>
/// <param name="Identity">The node's certified identity: the DER of the provider's certificate for its attestation key.</param>
/// <param name="JoinedAt">When it first joined.</param>
/// <param name="KeyGeneration">Generation of the disk key last released to it (bumped by rotation).</param>
/// <param name="Revoked">Whether its rejoin is refused.</param>
/// <param name="RevokedAt">When it was revoked.</param>
public sealed record NodeRecord(
    string Name,
    NodeRole Role,
    Guid DiskUuid,
    byte[] Identity,
    DateTimeOffset JoinedAt,
    int KeyGeneration = 1,
    bool Revoked = false,
    DateTimeOffset? RevokedAt = null)
{
    /// <summary>The identity certificate as PEM.</summary>
    [JsonIgnore]
    public string IdentityPem => System.Security.Cryptography.PemEncoding.WriteString("CERTIFICATE", Identity);
}

/// <summary>A registry record with the etcd revision that last modified it: what a conditional audit append compares.</summary>
/// <param name="Record">The record.</param>
/// <param name="ModRevision">etcd's mod revision of the record's key when it was read.</param>
public sealed record VersionedNodeRecord(NodeRecord Record, long ModRevision);

/// <summary>
/// The node registry in etcd under <c>/asterism/nodes/NAME</c>, one JSON record per node. Reads are linearizable
/// (etcd's default range: the answering member confirms with a quorum that it is current), so a revoked node is never
/// served from a stale member; without a quorum every call fails with <see cref="ControlPlaneError.NoQuorum"/>.
/// Updates are compare-and-swap on the record's mod revision, so two JoinServices never lose each other's writes.
/// </summary>
public sealed class NodeRegistry(EtcdConnection connection)
{
    private const int MaxNodes = 10_000;
    private const int MaxUpdateAttempts = 8;
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private readonly EtcdConnection _connection = connection ?? throw new ArgumentNullException(nameof(connection));

    /// <summary>Adds a node; refuses (InvalidRequest) when the name is already registered.</summary>
    public async Task RegisterAsync(NodeRecord record, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(record);
        NodeNames.Validate(record.Name);
        var key = EtcdKeys.NodesPrefix + record.Name;
        var txn = new TxnRequest();
        txn.Compare.Add(EtcdKeys.Absent(key));
        txn.Success.Add(EtcdKeys.Put(key, Serialize(record)));
        var response = await _connection.CallAsync((c, d, ct) => c.TransactionAsync(txn, deadline: d, cancellationToken: ct), cancellationToken);
        if (!response.Succeeded)
        {
            throw new ControlPlaneException(ControlPlaneError.InvalidRequest, $"node {record.Name} is already registered");
        }
    }

    /// <summary>The node's record (linearizable read), or null when it is not registered.</summary>
    public async Task<NodeRecord?> GetAsync(string name, CancellationToken cancellationToken = default) =>
        (await GetWithRevisionAsync(name, cancellationToken))?.Record;

    /// <summary>
    /// The node's record with its mod revision (linearizable read), or null when it is not registered; hand it to
    /// <see cref="AuditLog.AppendIfUnchangedAsync"/> so the entry commits only if the record is still this one.
    /// </summary>
    public async Task<VersionedNodeRecord?> GetVersionedAsync(string name, CancellationToken cancellationToken = default) =>
        await GetWithRevisionAsync(name, cancellationToken) is { } read ? new VersionedNodeRecord(read.Record, read.ModRevision) : null;

    /// <summary>All nodes, by name (linearizable read).</summary>
    public async Task<IReadOnlyList<NodeRecord>> ListAsync(CancellationToken cancellationToken = default)
    {
        var request = new RangeRequest { Key = EtcdKeys.Bytes(EtcdKeys.NodesPrefix), RangeEnd = EtcdKeys.PrefixEnd(EtcdKeys.NodesPrefix), Limit = MaxNodes + 1 };
        var response = await _connection.CallAsync((c, d, ct) => c.GetAsync(request, deadline: d, cancellationToken: ct), cancellationToken);
        if (response.Kvs.Count > MaxNodes)
        {
            throw new ControlPlaneException(ControlPlaneError.Corrupt, $"the registry holds more than {MaxNodes} nodes");
        }
        return [.. response.Kvs.Select(kv => Deserialize(kv.Key.ToStringUtf8(), kv.Value))];
    }

    /// <summary>
    /// Applies <paramref name="change"/> to the node's record with compare-and-swap, re-reading on a concurrent write;
    /// NotFound when the node is not registered. The name cannot change.
    /// </summary>
    public async Task<NodeRecord> UpdateAsync(string name, Func<NodeRecord, NodeRecord> change, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(change);
        for (var attempt = 0; attempt < MaxUpdateAttempts; attempt++)
        {
            var current = await GetWithRevisionAsync(name, cancellationToken)
                ?? throw new ControlPlaneException(ControlPlaneError.NotFound, $"node {name} is not registered");
            var updated = change(current.Record);
            if (updated.Name != name)
            {
                throw new ControlPlaneException(ControlPlaneError.InvalidRequest, "a registry update cannot rename a node");
            }
            var key = EtcdKeys.NodesPrefix + name;
            var txn = new TxnRequest();
            txn.Compare.Add(EtcdKeys.ModifiedAt(key, current.ModRevision));
            txn.Success.Add(EtcdKeys.Put(key, Serialize(updated)));
            var response = await _connection.CallAsync((c, d, ct) => c.TransactionAsync(txn, deadline: d, cancellationToken: ct), cancellationToken);
            if (response.Succeeded)
            {
                return updated;
            }
        }
        throw new ControlPlaneException(ControlPlaneError.Conflict, $"node {name} kept changing under concurrent writers");
    }

    /// <summary>Marks the node revoked (idempotent); NotFound for an unknown node.</summary>
    public Task<NodeRecord> RevokeAsync(string name, DateTimeOffset at, CancellationToken cancellationToken = default) =>
        UpdateAsync(name, r => r.Revoked ? r : r with { Revoked = true, RevokedAt = at }, cancellationToken);

    /// <summary>Deletes the node's record; NotFound when there is none.</summary>
    public async Task RemoveAsync(string name, CancellationToken cancellationToken = default)
    {
        NodeNames.Validate(name);
        var request = new DeleteRangeRequest { Key = EtcdKeys.Bytes(EtcdKeys.NodesPrefix + name) };
        var response = await _connection.CallAsync((c, d, ct) => c.DeleteAsync(request, deadline: d, cancellationToken: ct), cancellationToken);
        if (response.Deleted == 0)
        {
            throw new ControlPlaneException(ControlPlaneError.NotFound, $"node {name} is not registered");
        }
    }

    /// <summary>
    /// Deletes the node's record only if it is still the one <paramref name="read"/> holds (its mod revision compared in
    /// the deleting transaction); Conflict, and nothing deleted, when it changed or vanished meanwhile. A remover that
    /// decided on an unrevoked record must not erase a revocation that landed after its read: a revoked record is the
    /// node's deny entry.
    /// </summary>
    public async Task RemoveIfUnchangedAsync(VersionedNodeRecord read, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(read);
        var name = read.Record.Name;
        NodeNames.Validate(name);
        var key = EtcdKeys.NodesPrefix + name;
        var txn = new TxnRequest();
        txn.Compare.Add(EtcdKeys.ModifiedAt(key, read.ModRevision));
        txn.Success.Add(new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = EtcdKeys.Bytes(key) } });
        var response = await _connection.CallAsync((c, d, ct) => c.TransactionAsync(txn, deadline: d, cancellationToken: ct), cancellationToken);
        if (!response.Succeeded)
        {
            throw new ControlPlaneException(ControlPlaneError.Conflict, $"{name} changed while being removed (revoked?); nothing removed");
        }
    }

    private async Task<(NodeRecord Record, long ModRevision)?> GetWithRevisionAsync(string name, CancellationToken cancellationToken)
    {
        NodeNames.Validate(name);
        var key = EtcdKeys.NodesPrefix + name;
        var response = await _connection.CallAsync((c, d, ct) => c.GetAsync(new RangeRequest { Key = EtcdKeys.Bytes(key) }, deadline: d, cancellationToken: ct), cancellationToken);
        if (response.Kvs.Count == 0)
        {
            return null;
        }
        var kv = response.Kvs[0];
        return (Deserialize(key, kv.Value), kv.ModRevision);
    }

    private static byte[] Serialize(NodeRecord record) => JsonSerializer.SerializeToUtf8Bytes(record, Json);

    /// <summary>Parses a registry value read under <paramref name="key"/>; Corrupt when it is too large, malformed or names another node.</summary>
    internal static NodeRecord Deserialize(string key, Google.Protobuf.ByteString value)
    {
        if (value.Length > EtcdKeys.MaxValueBytes)
        {
            throw new ControlPlaneException(ControlPlaneError.Corrupt, $"registry entry {key} is larger than {EtcdKeys.MaxValueBytes} bytes");
        }
        try
        {
            var record = JsonSerializer.Deserialize<NodeRecord>(value.Span, Json);
            if (record is null || key != EtcdKeys.NodesPrefix + record.Name || record.Identity is null)
            {
                throw new ControlPlaneException(ControlPlaneError.Corrupt, $"registry entry {key} does not match its key");
            }
            return record;
        }
        catch (JsonException e)
        {
            throw new ControlPlaneException(ControlPlaneError.Corrupt, $"registry entry {key} is not a valid record", e);
        }
    }
}
