using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Etcdserverpb;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.ControlPlane;

/// <summary>What an audit entry records.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<AuditKind>))]
public enum AuditKind
{
    /// <summary>A disk key was released (join or rejoin); written before the key leaves.</summary>
    Release,

    /// <summary>A release was refused (revoked or foreign node).</summary>
    RefusedRelease,

    /// <summary>A node reports how it was unlocked (rejoin or operator recovery).</summary>
    Recovery,

    /// <summary>A node was revoked.</summary>
    Revocation,

    /// <summary>An etcd member was added or removed.</summary>
    MembershipChange,

    /// <summary>Master-secret rotation: begun, a node's disk moved to the new generation, the old generation declared void.</summary>
    KeyRotation,
}

/// <summary>One link of the chain.</summary>
/// <param name="Sequence">1, 2, 3, … without gaps.</param>
/// <param name="Time">When it was appended (writer's clock).</param>
/// <param name="Kind">What it records.</param>
/// <param name="Node">The node it is about.</param>
/// <param name="Detail">Free text (no secrets: names, paths, reasons).</param>
/// <param name="Previous">Hex SHA-256 of the previous entry (64 zeros for the first).</param>
/// <param name="Hash">Hex SHA-256 of this entry's canonical encoding, <see cref="Previous"/> included.</param>
public sealed record AuditEntry(long Sequence, DateTimeOffset Time, AuditKind Kind, string Node, string Detail, string Previous, string Hash)
{
    /// <summary>The hash before the first entry.</summary>
    public static readonly string Genesis = new('0', 64);

    /// <summary>
    /// SHA-256 over a length-prefixed binary encoding (not the JSON: JSON has many spellings of one value, so hashing it
    /// would make verification depend on the serializer).
    /// </summary>
    public static string ComputeHash(long sequence, DateTimeOffset time, AuditKind kind, string node, string detail, string previous)
    {
        using var buffer = new MemoryStream();
        var number = new byte[8];
        void Field(ReadOnlySpan<byte> bytes)
        {
            BinaryPrimitives.WriteInt32BigEndian(number, bytes.Length);
            buffer.Write(number, 0, 4);
            buffer.Write(bytes);
        }
        Field("asterism-audit-v1"u8);
        BinaryPrimitives.WriteInt64BigEndian(number, sequence);
        buffer.Write(number);
        BinaryPrimitives.WriteInt64BigEndian(number, time.ToUnixTimeMilliseconds());
        buffer.Write(number);
        Field(Encoding.UTF8.GetBytes(kind.ToString()));
        Field(Encoding.UTF8.GetBytes(node));
        Field(Encoding.UTF8.GetBytes(detail));
        Field(Encoding.ASCII.GetBytes(previous));
        return Convert.ToHexStringLower(SHA256.HashData(buffer.ToArray()));
    }
}

/// <summary>The outcome of <see cref="AuditLog.VerifyAsync"/>.</summary>
/// <param name="Entries">Entries walked.</param>
/// <param name="BrokenAt">Sequence number of the first broken link, or null when the chain is intact.</param>
/// <param name="Reason">What is wrong there.</param>
public sealed record AuditVerification(long Entries, long? BrokenAt, string? Reason)
{
    /// <summary>Whether every link holds and the head names the last entry.</summary>
    public bool Intact => BrokenAt is null;

    /// <summary>One line for the CLI.</summary>
    public string Message => Intact ? $"audit chain intact ({Entries} entries)" : $"audit chain broken at entry {BrokenAt}: {Reason}";
}

/// <summary>
/// The tamper-evident audit log in etcd: entries under <c>/asterism/audit/entries/SEQ</c>, each carrying the hash of the
/// one before, and a head key naming the last sequence number and hash. An append is one transaction that succeeds only
/// if the head is still the one the writer read (compare on its mod revision) and the new entry's key is unused; a writer
/// that lost the race re-reads and retries, so the chain stays linear under concurrent JoinServices. Concurrent appends
/// through one instance share a transaction (group commit), so one JoinService under load makes one write per batch. Without a quorum the
/// append fails (NoQuorum), and the caller must then not release the key: no audit entry, no key.
/// </summary>
public sealed class AuditLog(EtcdConnection connection, TimeProvider? time = null, ILogger? logger = null)
{
    private const int MaxAppendAttempts = 16;
    private const int MaxDetailLength = 4096;
    private const int PageSize = 500;
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private readonly EtcdConnection _connection = connection ?? throw new ArgumentNullException(nameof(connection));
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly ILogger _logger = logger ?? NullLogger.Instance;
    private RefusalAuditLimiter? _refusals;

    /// <summary>
    /// Appends a <see cref="AuditKind.RefusedRelease"/> entry through this log's <see cref="RefusalAuditLimiter"/>: at
    /// most one per (node, reason) per <see cref="RefusalAuditLimiter.DefaultWindow"/>, the next one carrying the count
    /// of refusals in between. Null when this refusal was only counted. For refusals only: a release must be appended
    /// with <see cref="AppendIfUnchangedAsync"/> (or <see cref="AppendAsync"/>) before its key leaves, every time.
    /// </summary>
    public Task<AuditEntry?> AppendRefusalAsync(string node, string reason, string detail, CancellationToken cancellationToken = default) =>
        Refusals.RecordAsync(node, reason, detail, cancellationToken);

    /// <summary>The limiter behind <see cref="AppendRefusalAsync"/> (one per log instance, made on first use).</summary>
    public RefusalAuditLimiter Refusals =>
        LazyInitializer.EnsureInitialized(ref _refusals, () => new RefusalAuditLimiter((node, detail, ct) => AppendAsync(AuditKind.RefusedRelease, node, detail, ct), time: _time));

    /// <summary>
    /// Appends an entry at the head of the chain and returns it once it is committed. Concurrent appends through this
    /// instance are committed together (group commit): one writer at a time takes every waiting entry (up to
    /// <see cref="MaxBatch"/>), chains them in arrival order and writes them and the new head in one transaction. Without
    /// it, N concurrent JoinService calls raced N compare-and-swaps on the head and all but one retried, so 256 rejoins
    /// at once mostly failed with "the audit head kept moving" (measured by `macro rejoin`).
    /// </summary>
    public async Task<AuditEntry> AppendAsync(AuditKind kind, string node, string detail, CancellationToken cancellationToken = default) =>
        (await EnqueueAsync(kind, node, detail, null, cancellationToken))!;

    /// <summary>
    /// Appends an entry about <paramref name="record"/>'s node only if its registry record is unchanged since it was read
    /// (its mod revision compared in the same transaction that writes the entry); null, and nothing appended, when the
    /// record changed or vanished meanwhile. A release audited this way cannot slip past a revocation that landed after
    /// the caller's read: the caller re-reads and decides again. Group-committed like <see cref="AppendAsync"/>: a
    /// changed record drops only its own entry from the batch.
    /// </summary>
    public Task<AuditEntry?> AppendIfUnchangedAsync(AuditKind kind, VersionedNodeRecord record, string detail, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(record);
        return EnqueueAsync(kind, record.Record.Name, detail, record, cancellationToken);
    }

    private async Task<AuditEntry?> EnqueueAsync(AuditKind kind, string node, string detail, VersionedNodeRecord? unchanged, CancellationToken cancellationToken)
    {
        NodeNames.Validate(node);
        ArgumentNullException.ThrowIfNull(detail);
        if (detail.Length > MaxDetailLength)
        {
            throw new ControlPlaneException(ControlPlaneError.InvalidRequest, $"audit detail is longer than {MaxDetailLength} characters");
        }
        var pending = new PendingAppend(kind, node, detail, unchanged);
        lock (_queue)
        {
            _queue.Enqueue(pending);
        }
        // Whoever holds the writer slot commits what is queued, this entry included unless it came too late; each caller
        // takes the slot in turn until its own entry is done, so no entry waits for a writer that is not coming.
        while (!pending.Done.Task.IsCompleted)
        {
            await _writer.WaitAsync(cancellationToken);
            try
            {
                if (!pending.Done.Task.IsCompleted)
                {
                    // Not the caller's token: the batch holds other callers' entries (each etcd call has its deadline).
                    await CommitQueuedAsync(CancellationToken.None);
                }
            }
            finally
            {
                _writer.Release();
            }
        }
        return await pending.Done.Task;
    }

    /// <summary>Most entries one transaction carries (three operations each at most, below etcd's default limit of 128 per side).</summary>
    private const int MaxBatch = 40;

    private readonly Queue<PendingAppend> _queue = new();
    private readonly SemaphoreSlim _writer = new(1, 1);

    private sealed class PendingAppend(AuditKind kind, string node, string detail, VersionedNodeRecord? unchanged)
    {
        public AuditKind Kind { get; } = kind;
        public string Node { get; } = node;
        public string Detail { get; } = detail;

        /// <summary>The registry record as the caller read it, when the entry may only be written while it is unchanged.</summary>
        public VersionedNodeRecord? Unchanged { get; } = unchanged;

        /// <summary>The committed entry; null when <see cref="Unchanged"/> changed and nothing was written.</summary>
        public TaskCompletionSource<AuditEntry?> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>
    /// Takes up to <see cref="MaxBatch"/> queued entries and commits them in one transaction, or fails them all. A
    /// conditional entry whose record changed is answered null and left out of the next attempt; the others retry.
    /// </summary>
    private async Task CommitQueuedAsync(CancellationToken cancellationToken)
    {
        List<PendingAppend> batch;
        lock (_queue)
        {
            batch = [];
            while (batch.Count < MaxBatch && _queue.TryDequeue(out var next))
            {
                batch.Add(next);
            }
        }
        try
        {
            for (var attempt = 0; attempt < MaxAppendAttempts && batch.Count > 0; attempt++)
            {
                var (head, headRevision) = await ReadHeadAsync(cancellationToken);
                var now = DateTimeOffset.FromUnixTimeMilliseconds(_time.GetUtcNow().ToUnixTimeMilliseconds());
                var entries = new List<AuditEntry>(batch.Count);
                var conditional = new List<PendingAppend>();
                var previous = head.Hash;
                var txn = new TxnRequest();
                // No head yet: it must still be absent; otherwise it must be unchanged since we read it.
                txn.Compare.Add(headRevision == 0 ? EtcdKeys.Absent(EtcdKeys.AuditHead) : EtcdKeys.ModifiedAt(EtcdKeys.AuditHead, headRevision));
                foreach (var item in batch)
                {
                    var sequence = head.Sequence + entries.Count + 1;
                    var hash = AuditEntry.ComputeHash(sequence, now, item.Kind, item.Node, item.Detail, previous);
                    var entry = new AuditEntry(sequence, now, item.Kind, item.Node, item.Detail, previous, hash);
                    entries.Add(entry);
                    previous = hash;
                    txn.Compare.Add(EtcdKeys.Absent(EtcdKeys.AuditEntry(sequence)));
                    txn.Success.Add(EtcdKeys.Put(EtcdKeys.AuditEntry(sequence), JsonSerializer.SerializeToUtf8Bytes(entry, Json)));
                    if (item.Unchanged is { } unchanged)
                    {
                        var recordKey = EtcdKeys.NodesPrefix + item.Node;
                        txn.Compare.Add(EtcdKeys.ModifiedAt(recordKey, unchanged.ModRevision));
                        // On failure, read the record back in the same transaction to tell "record changed" from "head moved".
                        txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = EtcdKeys.Bytes(recordKey), KeysOnly = true } });
                        conditional.Add(item);
                    }
                }
                txn.Success.Add(EtcdKeys.Put(EtcdKeys.AuditHead, JsonSerializer.SerializeToUtf8Bytes(new Head(entries[^1].Sequence, entries[^1].Hash), Json)));
                var response = await _connection.CallAsync((c, d, ct) => c.TransactionAsync(txn, deadline: d, cancellationToken: ct), cancellationToken);
                if (response.Succeeded)
                {
                    for (var i = 0; i < batch.Count; i++)
                    {
                        batch[i].Done.TrySetResult(entries[i]);
                    }
                    return;
                }
                // Entries whose record changed are answered "not appended" and leave the batch; the rest retry.
                for (var i = 0; i < conditional.Count; i++)
                {
                    if (RecordChanged(response, i, conditional[i].Unchanged!.ModRevision))
                    {
                        conditional[i].Done.TrySetResult(null);
                        batch.Remove(conditional[i]);
                    }
                }
            }
            if (batch.Count > 0)
            {
                throw new ControlPlaneException(ControlPlaneError.Conflict, "the audit head kept moving under concurrent writers");
            }
        }
        catch (Exception e)
        {
            // Not committed (or unknown): no entry, so none of these callers may release its key.
            foreach (var item in batch)
            {
                item.Done.TrySetException(e);
            }
        }
    }

    private static bool RecordChanged(TxnResponse response, int index, long modRevision)
    {
        var kvs = index < response.Responses.Count ? response.Responses[index].ResponseRange?.Kvs : null;
        return kvs is null || kvs.Count == 0 || kvs[0].ModRevision != modRevision;
    }

    /// <summary>Reads entries in order, from <paramref name="fromSequence"/> on (linearizable, paged).</summary>
    public async IAsyncEnumerable<AuditEntry> ReadAsync(long fromSequence = 1, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach (var (sequence, entry, error) in ReadRawAsync(fromSequence, cancellationToken))
        {
            yield return entry ?? throw new ControlPlaneException(ControlPlaneError.Corrupt, $"audit entry {sequence}: {error}");
        }
    }

    /// <summary>
    /// Walks the whole chain: each entry must parse, sit at its own sequence number without gaps, carry the previous
    /// entry's hash and hash to its own; the head must name the last entry. Names the first broken link.
    /// </summary>
    public async Task<AuditVerification> VerifyAsync(CancellationToken cancellationToken = default)
    {
        var (head, _) = await ReadHeadAsync(cancellationToken);
        var previous = AuditEntry.Genesis;
        long expected = 1;
        await foreach (var (sequence, entry, error) in ReadRawAsync(1, cancellationToken))
        {
            string? reason = null;
            if (sequence != expected)
            {
                reason = sequence < 0 ? error : $"missing (the next stored entry is {sequence})";
            }
            else if (entry is null)
            {
                reason = error;
            }
            else if (!HexEquals(entry.Previous, previous))
            {
                reason = $"its previous-hash does not match entry {expected - 1}";
            }
            else if (!HexEquals(entry.Hash, AuditEntry.ComputeHash(entry.Sequence, entry.Time, entry.Kind, entry.Node, entry.Detail, entry.Previous)))
            {
                reason = "its content does not match its hash (edited)";
            }
            if (reason is not null)
            {
                return Broken(expected - 1, expected, reason);
            }
            previous = entry!.Hash;
            expected++;
        }
        var last = expected - 1;
        if (head.Sequence != last)
        {
            return Broken(last, head.Sequence > last ? last + 1 : head.Sequence,
                head.Sequence > last ? $"missing (the head names entry {head.Sequence})" : $"the head names entry {head.Sequence} but entries go on to {last}");
        }
        if (!HexEquals(head.Hash, previous))
        {
            return Broken(last, last, "its hash does not match the head");
        }
        return new AuditVerification(last, null, null);
    }

    private AuditVerification Broken(long walked, long at, string reason)
    {
        ControlPlaneLog.AuditBroken(_logger, at, reason);
        return new AuditVerification(walked, at, reason);
    }

    private static bool HexEquals(string a, string b) =>
        CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(a), Encoding.ASCII.GetBytes(b));

    private async IAsyncEnumerable<(long Sequence, AuditEntry? Entry, string? Error)> ReadRawAsync(long fromSequence, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var from = EtcdKeys.Bytes(EtcdKeys.AuditEntry(Math.Max(1, fromSequence)));
        var end = EtcdKeys.PrefixEnd(EtcdKeys.AuditEntriesPrefix);
        long? revision = null;
        while (true)
        {
            // One revision for all pages, so a concurrent append cannot make the walk see a half-moved head.
            var request = new RangeRequest { Key = from, RangeEnd = end, Limit = PageSize, Revision = revision ?? 0 };
            var response = await _connection.CallAsync((c, d, ct) => c.GetAsync(request, deadline: d, cancellationToken: ct), cancellationToken);
            revision ??= response.Header.Revision;
            foreach (var kv in response.Kvs)
            {
                yield return Parse(kv.Key.ToStringUtf8(), kv.Value);
            }
            if (!response.More || response.Kvs.Count == 0)
            {
                yield break;
            }
            var lastKey = response.Kvs[^1].Key.ToByteArray();
            from = Google.Protobuf.ByteString.CopyFrom([.. lastKey, 0]);
        }
    }

    private static (long, AuditEntry?, string?) Parse(string key, Google.Protobuf.ByteString value)
    {
        var suffix = key[EtcdKeys.AuditEntriesPrefix.Length..];
        if (suffix.Length != 20 || !long.TryParse(suffix, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var sequence))
        {
            return (-1, null, $"stray key {key} in the audit log");
        }
        if (value.Length > EtcdKeys.MaxValueBytes)
        {
            return (sequence, null, $"larger than {EtcdKeys.MaxValueBytes} bytes");
        }
        try
        {
            var entry = JsonSerializer.Deserialize<AuditEntry>(value.Span, Json);
            if (entry is null || entry.Node is null || entry.Detail is null || entry.Previous is null || entry.Hash is null)
            {
                return (sequence, null, "not a valid entry");
            }
            return entry.Sequence == sequence ? (sequence, entry, null) : (sequence, null, $"stored under {sequence} but says {entry.Sequence}");
        }
        catch (JsonException)
        {
            return (sequence, null, "not a valid entry (edited)");
        }
    }

    private async Task<(Head Head, long ModRevision)> ReadHeadAsync(CancellationToken cancellationToken)
    {
        var response = await _connection.CallAsync((c, d, ct) => c.GetAsync(new RangeRequest { Key = EtcdKeys.Bytes(EtcdKeys.AuditHead) }, deadline: d, cancellationToken: ct), cancellationToken);
        if (response.Kvs.Count == 0)
        {
            return (new Head(0, AuditEntry.Genesis), 0);
        }
        var kv = response.Kvs[0];
        try
        {
            var head = kv.Value.Length <= EtcdKeys.MaxValueBytes ? JsonSerializer.Deserialize<Head>(kv.Value.Span, Json) : null;
            return head is { Hash: not null } ? (head, kv.ModRevision) : throw new ControlPlaneException(ControlPlaneError.Corrupt, "the audit head is not valid");
        }
        catch (JsonException e)
        {
            throw new ControlPlaneException(ControlPlaneError.Corrupt, "the audit head is not valid", e);
        }
    }

    private sealed record Head(long Sequence, string Hash);
}
