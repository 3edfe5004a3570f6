using System.Text.Json;
using Asterism.Crypto;
using Etcdserverpb;

namespace Asterism.ControlPlane;

/// <summary>A master-secret rotation in progress (issue #16 item 4).</summary>
/// <param name="From">The generation every node was on when it began (the cluster's current generation).</param>
/// <param name="To">The new generation, <see cref="From"/> + 1.</param>
/// <param name="WrappedSecret">
/// The new master secret sealed under a key derived from generation <see cref="From"/>'s master secret (the
/// JoinService seals and opens it; this store never sees it in clear): every control plane can open it, etcd's
/// files and the admin's etcd access alone cannot.
/// </param>
/// <param name="StartedAt">When it began.</param>
/// <param name="StartedBy">Who began it (the admin certificate's subject).</param>
public sealed record RotationRecord(int From, int To, byte[] WrappedSecret, DateTimeOffset StartedAt, string StartedBy)
{
    /// <inheritdoc />
    public override string ToString() => $"rotation {From}->{To} started {StartedAt:u} by {StartedBy} [secret redacted]";
}

/// <summary>What a key release is decided on, read in one linearizable etcd transaction.</summary>
/// <param name="Node">The node's registry record with its mod revision, or null when it is not registered.</param>
/// <param name="Pending">The pending rotation, or null.</param>
/// <param name="CurrentGeneration">The cluster's current generation (<c>/asterism/keygeneration</c>, absent = 1).</param>
public sealed record ReleaseView(VersionedNodeRecord? Node, RotationRecord? Pending, int CurrentGeneration);

/// <summary>
/// The rotation state in etcd: <c>/asterism/rotation</c> (the pending rotation, absent when none) and
/// <c>/asterism/keygeneration</c> (the cluster's current master-secret generation, absent = 1). Each node's
/// generation lives in its registry record (<see cref="NodeRecord.KeyGeneration"/>). Every change is audited
/// (<see cref="AuditKind.KeyRotation"/>) before it is made. Completion is one transaction (rotation deleted, generation
/// advanced) and is refused while a non-revoked node is still on the old generation, so the old generation stays
/// derivable for exactly as long as a disk may still need it.
/// </summary>
public sealed class KeyRotation(EtcdConnection connection, TimeProvider? time = null)
{
    /// <summary>The key of the pending rotation.</summary>
    public const string RotationKey = "/asterism/rotation";

    /// <summary>The key of the cluster's current generation.</summary>
    public const string GenerationKey = "/asterism/keygeneration";

    private const int MaxWrappedBytes = 4096;
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private readonly EtcdConnection _connection = connection ?? throw new ArgumentNullException(nameof(connection));
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    private NodeRegistry Registry => new(_connection);

    private AuditLog Audit => new(_connection, _time);

    /// <summary>The cluster's current generation (1 before any rotation completed); linearizable.</summary>
    public async Task<int> CurrentGenerationAsync(CancellationToken cancellationToken = default)
    {
        var kv = await GetAsync(GenerationKey, cancellationToken);
        return kv is null ? 1 : ParseGeneration(kv);
    }

    private static int ParseGeneration(Mvccpb.KeyValue kv) =>
        int.TryParse(kv.Value.ToStringUtf8(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var g) && g is >= 1 and <= KeyDerivation.MaxGeneration
            ? g
            : throw new ControlPlaneException(ControlPlaneError.Corrupt, $"{GenerationKey} is not a generation (1 to {KeyDerivation.MaxGeneration})");

    /// <summary>
    /// The node's registry record, the pending rotation and the current generation as of one etcd revision: a
    /// transaction of three range operations, which etcd serves as one linearizable read (read-only transactions take
    /// the read-index path, no raft proposal) — one round trip, what a plain registry read costs.
    /// </summary>
    public async Task<ReleaseView> ReadForReleaseAsync(string node, CancellationToken cancellationToken = default)
    {
        NodeNames.Validate(node);
        var nodeKey = EtcdKeys.NodesPrefix + node;
        var txn = new TxnRequest();
        txn.Success.Add(new RequestOp { RequestRange = new RangeRequest { Key = EtcdKeys.Bytes(nodeKey) } });
        txn.Success.Add(new RequestOp { RequestRange = new RangeRequest { Key = EtcdKeys.Bytes(RotationKey) } });
        txn.Success.Add(new RequestOp { RequestRange = new RangeRequest { Key = EtcdKeys.Bytes(GenerationKey) } });
        var response = await _connection.CallAsync((c, d, ct) => c.TransactionAsync(txn, deadline: d, cancellationToken: ct), cancellationToken);
        if (response.Responses.Count != 3)
        {
            throw new ControlPlaneException(ControlPlaneError.Corrupt, "etcd answered the release read with the wrong number of results");
        }
        var record = response.Responses[0].ResponseRange.Kvs is { Count: > 0 } n
            ? new VersionedNodeRecord(NodeRegistry.Deserialize(nodeKey, n[0].Value), n[0].ModRevision)
            : null;
        var pending = response.Responses[1].ResponseRange.Kvs is { Count: > 0 } r ? ParseRecord(r[0]).Record : null;
        var generation = response.Responses[2].ResponseRange.Kvs is { Count: > 0 } g ? ParseGeneration(g[0]) : 1;
        return new ReleaseView(record, pending, generation);
    }

    /// <summary>The pending rotation, or null; linearizable.</summary>
    public async Task<RotationRecord?> PendingAsync(CancellationToken cancellationToken = default) =>
        (await GetRecordAsync(cancellationToken))?.Record;

    /// <summary>
    /// Begins a rotation to the next generation with <paramref name="wrappedSecret"/>; Conflict when one is pending
    /// (finish it first). Audited before it is stored. Returns the record. <paramref name="sealedUnder"/>, when given, is
    /// the generation the caller sealed the secret under: a cluster that moved on since (a completion landing between the
    /// caller's read and this one) is Conflict, never a record whose seal no control plane can open.
    /// </summary>
    public async Task<RotationRecord> BeginAsync(byte[] wrappedSecret, string startedBy, string auditNode, CancellationToken cancellationToken = default, int? sealedUnder = null)
    {
        ArgumentNullException.ThrowIfNull(wrappedSecret);
        if (wrappedSecret.Length is 0 or > MaxWrappedBytes)
        {
            throw new ControlPlaneException(ControlPlaneError.InvalidRequest, "the wrapped secret is empty or too large");
        }
        if (await PendingAsync(cancellationToken) is { } pending)
        {
            throw new ControlPlaneException(ControlPlaneError.Conflict, $"a rotation to generation {pending.To} is in progress; complete it first");
        }
        var from = await CurrentGenerationAsync(cancellationToken);
        if (sealedUnder is { } sealedGeneration && sealedGeneration != from)
        {
            throw new ControlPlaneException(ControlPlaneError.Conflict, $"the cluster's generation is {from}, not {sealedGeneration}: a rotation completed meanwhile; begin again");
        }
        var record = new RotationRecord(from, from + 1, wrappedSecret, _time.GetUtcNow(), startedBy);
        await Audit.AppendAsync(AuditKind.KeyRotation, auditNode, $"rotation to generation {record.To} begun by {startedBy}: every node gets a keyslot for the new master secret", cancellationToken);
        var txn = new TxnRequest();
        txn.Compare.Add(Absent(RotationKey));
        txn.Success.Add(Put(RotationKey, JsonSerializer.SerializeToUtf8Bytes(record, Json)));
        var response = await _connection.CallAsync((c, d, ct) => c.TransactionAsync(txn, deadline: d, cancellationToken: ct), cancellationToken);
        return response.Succeeded
            ? record
            : throw new ControlPlaneException(ControlPlaneError.Conflict, "another rotation began at the same time");
    }

    /// <summary>
    /// Records that <paramref name="node"/>'s disk now opens with generation <paramref name="generation"/>'s key
    /// (called only after its keyslot moved). Audited; a generation other than the pending rotation's target is refused.
    /// </summary>
    public async Task<NodeRecord> ConfirmAsync(string node, int generation, CancellationToken cancellationToken = default)
    {
        var pending = await PendingAsync(cancellationToken)
            ?? throw new ControlPlaneException(ControlPlaneError.InvalidRequest, "no rotation is in progress");
        if (generation != pending.To)
        {
            throw new ControlPlaneException(ControlPlaneError.InvalidRequest, $"generation {generation} is not the rotation's target {pending.To}");
        }
        var current = await Registry.GetAsync(node, cancellationToken)
            ?? throw new ControlPlaneException(ControlPlaneError.NotFound, $"node {node} is not registered");
        if (current.KeyGeneration >= generation)
        {
            return current;
        }
        await Audit.AppendAsync(AuditKind.KeyRotation, node, $"disk key of {current.DiskUuid} moved to generation {generation}", cancellationToken);
        return await Registry.UpdateAsync(node, r => r.KeyGeneration >= generation ? r : r with { KeyGeneration = generation }, cancellationToken);
    }

    /// <summary>Non-revoked nodes still below <paramref name="generation"/>, by name.</summary>
    public async Task<IReadOnlyList<NodeRecord>> BehindAsync(int generation, CancellationToken cancellationToken = default) =>
        Behind(await Registry.ListAsync(cancellationToken), generation);

    /// <summary>The non-revoked nodes of <paramref name="nodes"/> still below <paramref name="generation"/>: what completion waits for.</summary>
    private static List<NodeRecord> Behind(IEnumerable<NodeRecord> nodes, int generation) =>
        [.. nodes.Where(n => !n.Revoked && n.KeyGeneration < generation)];

    /// <summary>
    /// Completes the pending rotation: refused (Conflict, naming them) while a non-revoked node is still on the old
    /// generation; otherwise audits "generation N void" and, in one transaction, deletes the wrapped secret and makes
    /// the new generation current. Returns the now-void generation.
    /// </summary>
    public async Task<int> CompleteAsync(string completedBy, string auditNode, CancellationToken cancellationToken = default)
    {
        var (pending, revision) = await GetRecordAsync(cancellationToken)
            ?? throw new ControlPlaneException(ControlPlaneError.InvalidRequest, "no rotation is in progress");
        // The registry as of one revision: the commit below requires that no record was created or changed since, so a
        // node registered at the old generation meanwhile (a join that read the generation before this completion) is
        // never left behind a generation that is about to become void.
        var (nodes, registryRevision) = await ReadRegistryAsync(cancellationToken);
        var behind = Behind(nodes, pending.To);
        if (behind.Count > 0)
        {
            throw new ControlPlaneException(ControlPlaneError.Conflict,
                $"{behind.Count} node(s) still on generation {pending.From}: {string.Join(", ", behind.Select(n => n.Name))}");
        }
        await Audit.AppendAsync(AuditKind.KeyRotation, auditNode,
            $"generation {pending.From} void: its master secret and every share of it no longer open any disk (rotation to generation {pending.To} completed by {completedBy})", cancellationToken);
        var txn = new TxnRequest();
        txn.Compare.Add(new Compare
        {
            Key = EtcdKeys.Bytes(RotationKey),
            Target = Compare.Types.CompareTarget.Mod,
            Result = Compare.Types.CompareResult.Equal,
            ModRevision = revision,
        });
        txn.Compare.Add(new Compare
        {
            Key = EtcdKeys.Bytes(EtcdKeys.NodesPrefix),
            RangeEnd = EtcdKeys.PrefixEnd(EtcdKeys.NodesPrefix),
            Target = Compare.Types.CompareTarget.Mod,
            Result = Compare.Types.CompareResult.Less,
            ModRevision = registryRevision + 1,
        });
        if (BeforeCompleteCommit is { } hook)
        {
            await hook(cancellationToken);
        }
        txn.Success.Add(new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = EtcdKeys.Bytes(RotationKey) } });
        txn.Success.Add(Put(GenerationKey, System.Text.Encoding.ASCII.GetBytes(pending.To.ToString(System.Globalization.CultureInfo.InvariantCulture))));
        var response = await _connection.CallAsync((c, d, ct) => c.TransactionAsync(txn, deadline: d, cancellationToken: ct), cancellationToken);
        return response.Succeeded
            ? pending.From
            : throw new ControlPlaneException(ControlPlaneError.Conflict, "the rotation or the node registry changed while it was being completed; run it again");
    }

    /// <summary>
    /// Test seam: runs after the completion decided on the registry and before its commit, so a test can land a join
    /// (a record registered at the old generation) exactly in the window the commit's compare must close.
    /// </summary>
    internal Func<CancellationToken, Task>? BeforeCompleteCommit { get; set; }

    /// <summary>Every registry record and the etcd revision they were read at (linearizable).</summary>
    private async Task<(IReadOnlyList<NodeRecord> Nodes, long Revision)> ReadRegistryAsync(CancellationToken cancellationToken)
    {
        const int maxNodes = 10_000;
        var request = new RangeRequest { Key = EtcdKeys.Bytes(EtcdKeys.NodesPrefix), RangeEnd = EtcdKeys.PrefixEnd(EtcdKeys.NodesPrefix), Limit = maxNodes + 1 };
        var response = await _connection.CallAsync((c, d, ct) => c.GetAsync(request, deadline: d, cancellationToken: ct), cancellationToken);
        if (response.Kvs.Count > maxNodes)
        {
            throw new ControlPlaneException(ControlPlaneError.Corrupt, $"the registry holds more than {maxNodes} nodes");
        }
        return ([.. response.Kvs.Select(kv => NodeRegistry.Deserialize(kv.Key.ToStringUtf8(), kv.Value))], response.Header.Revision);
    }

    private async Task<(RotationRecord Record, long ModRevision)?> GetRecordAsync(CancellationToken cancellationToken)
    {
        var kv = await GetAsync(RotationKey, cancellationToken);
        return kv is null ? null : ParseRecord(kv);
    }

    private static (RotationRecord Record, long ModRevision) ParseRecord(Mvccpb.KeyValue kv)
    {
        if (kv.Value.Length > EtcdKeys.MaxValueBytes)
        {
            throw new ControlPlaneException(ControlPlaneError.Corrupt, $"{RotationKey} is too large");
        }
        try
        {
            var record = JsonSerializer.Deserialize<RotationRecord>(kv.Value.Span, Json);
            return record is { WrappedSecret.Length: > 0 and <= MaxWrappedBytes } && record.From is >= 1 and < KeyDerivation.MaxGeneration && record.To == record.From + 1 && record.StartedBy is not null
                ? (record, kv.ModRevision)
                : throw new ControlPlaneException(ControlPlaneError.Corrupt, $"{RotationKey} is not a valid rotation record");
        }
        catch (JsonException e)
        {
            throw new ControlPlaneException(ControlPlaneError.Corrupt, $"{RotationKey} is not a valid rotation record", e);
        }
    }

    private async Task<Mvccpb.KeyValue?> GetAsync(string key, CancellationToken cancellationToken)
    {
        var response = await _connection.CallAsync((c, d, ct) => c.GetAsync(new RangeRequest { Key = EtcdKeys.Bytes(key) }, deadline: d, cancellationToken: ct), cancellationToken);
        return response.Kvs.Count == 0 ? null : response.Kvs[0];
    }

    private static Compare Absent(string key) => EtcdKeys.Absent(key);

    private static RequestOp Put(string key, byte[] value) => EtcdKeys.Put(key, value);
}
