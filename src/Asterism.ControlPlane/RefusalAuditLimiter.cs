using System.Globalization;

namespace Asterism.ControlPlane;

/// <summary>
/// Coalesces <see cref="AuditKind.RefusedRelease"/> entries: at most one entry per (node, reason) per
/// <see cref="Window"/>; the refusals suppressed in between are counted and the next entry for that pair says so
/// ("… (and 41 more refusals since 2025-…Z)"). A revoked node looping on rejoin every 2 s would otherwise append
/// 1,800 entries an hour to a chain every `audit` walks. Only refusals go through here: releases keep "no audit entry,
/// no key" (every release is appended before its key leaves), and every refusal is still refused and logged by the
/// caller. The count is per limiter (each JoinService's gate has its own), so a cluster of three control planes
/// writes at most three entries per pair and window.
/// </summary>
/// <remarks>
/// A failed append (no quorum) is not a written entry: the pair's window is restored and the failed refusal counted,
/// so the next refusal tries again and carries the count. Memory is bounded: at most <see cref="MaxTracked"/> pairs are remembered;
/// beyond that, expired pairs are forgotten and, if none is, the refusal is written without coalescing (more entries,
/// never fewer).
/// </remarks>
public sealed class RefusalAuditLimiter
{
    /// <summary>Default coalescing window.</summary>
    public static readonly TimeSpan DefaultWindow = TimeSpan.FromSeconds(60);

    /// <summary>Most (node, reason) pairs remembered at once.</summary>
    public const int MaxTracked = 4096;

    private readonly Func<string, string, CancellationToken, Task<AuditEntry>> _append;
    private readonly TimeProvider _time;
    private readonly Dictionary<(string Node, string Reason), Pair> _pairs = [];

    /// <summary>
    /// A limiter writing through <paramref name="append"/> (node, detail): <see cref="AuditLog.AppendAsync"/> with
    /// <see cref="AuditKind.RefusedRelease"/> in production, a recorder in tests.
    /// </summary>
    public RefusalAuditLimiter(Func<string, string, CancellationToken, Task<AuditEntry>> append, TimeSpan? window = null, TimeProvider? time = null)
    {
        _append = append ?? throw new ArgumentNullException(nameof(append));
        Window = window ?? DefaultWindow;
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(Window, TimeSpan.Zero, nameof(window));
        _time = time ?? TimeProvider.System;
    }

    /// <summary>How long after a written entry further refusals of the same pair are only counted.</summary>
    public TimeSpan Window { get; }

    /// <summary>
    /// Records a refusal of <paramref name="node"/> for <paramref name="reason"/>: appends an entry with
    /// <paramref name="detail"/> (plus the count of refusals suppressed since the last one) or, within the window of the
    /// pair's last entry, only counts it. Returns the written entry, or null when it was coalesced. Throws what the
    /// append throws (nothing is counted as written then).
    /// </summary>
    public async Task<AuditEntry?> RecordAsync(string node, string reason, string detail, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(reason);
        ArgumentNullException.ThrowIfNull(detail);
        var now = _time.GetUtcNow();
        var key = (node, reason);
        Pair? pair;
        Pair before;
        lock (_pairs)
        {
            if (!_pairs.TryGetValue(key, out pair))
            {
                if (_pairs.Count >= MaxTracked)
                {
                    Prune(now);
                }
                if (_pairs.Count < MaxTracked)
                {
                    pair = new Pair();
                    _pairs[key] = pair;
                }
            }
            if (pair is not null && pair.WrittenAt is { } last && now - last < Window)
            {
                if (pair.Suppressed++ == 0)
                {
                    pair.SuppressedSince = now;
                }
                return null;
            }
            // Reserve the write under the lock, so concurrent refusals of this pair are counted rather than all written.
            before = pair?.Snapshot() ?? new Pair();
            if (pair is not null)
            {
                pair.WrittenAt = now;
                pair.Suppressed = 0;
                pair.SuppressedSince = null;
            }
        }
        var text = before.Suppressed == 0 ? detail
            : string.Create(CultureInfo.InvariantCulture, $"{detail} (and {before.Suppressed} more {(before.Suppressed == 1 ? "refusal" : "refusals")} since {before.SuppressedSince:yyyy-MM-dd'T'HH:mm:ss'Z'})");
        try
        {
            return await _append(node, text, cancellationToken);
        }
        catch
        {
            if (pair is not null)
            {
                lock (_pairs)
                {
                    // Not written: the previous window stands, and the count keeps this refusal, the ones it would
                    // have reported and any counted meanwhile.
                    pair.WrittenAt = before.WrittenAt;
                    pair.Suppressed += before.Suppressed + 1;
                    pair.SuppressedSince = before.SuppressedSince ?? (pair.SuppressedSince is { } since && since < now ? since : now);
                }
            }
            throw;
        }
    }

    /// <summary>Forgets pairs whose window has passed with nothing counted (called under the lock).</summary>
    private void Prune(DateTimeOffset now)
    {
        foreach (var (key, pair) in _pairs.ToList())
        {
            if (pair.Suppressed == 0 && (pair.WrittenAt is not { } last || now - last >= Window))
            {
                _pairs.Remove(key);
            }
        }
    }

    private sealed class Pair
    {
        public DateTimeOffset? WrittenAt { get; set; }
        public int Suppressed { get; set; }
        public DateTimeOffset? SuppressedSince { get; set; }

        public Pair Snapshot() => new() { WrittenAt = WrittenAt, Suppressed = Suppressed, SuppressedSince = SuppressedSince };
    }
}
