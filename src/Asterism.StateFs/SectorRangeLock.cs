namespace Asterism.StateFs;

/// <summary>
/// Locks half-open sector ranges: readers share, a writer excludes every overlapping reader and writer. A
/// read-modify-write of a partial sector therefore never interleaves with another write of that sector. Waiters are
/// few (bounded by the FUSE workers), so a list scan under one monitor is enough.
/// </summary>
internal sealed class SectorRangeLock
{
    private readonly object _gate = new();
    private readonly List<(long First, long End, bool Exclusive)> _held = [];

    /// <summary>Blocks until [<paramref name="first"/>, <paramref name="end"/>) can be held and holds it.</summary>
    public Holder Acquire(long first, long end, bool exclusive)
    {
        lock (_gate)
        {
            while (Conflicts(first, end, exclusive))
            {
                Monitor.Wait(_gate);
            }
            _held.Add((first, end, exclusive));
        }
        return new Holder(this, first, end, exclusive);
    }

    /// <summary>Number of ranges held now (tests).</summary>
    public int HeldCount
    {
        get
        {
            lock (_gate)
            {
                return _held.Count;
            }
        }
    }

    private bool Conflicts(long first, long end, bool exclusive)
    {
        foreach (var (f, e, x) in _held)
        {
            if (f < end && first < e && (x || exclusive))
            {
                return true;
            }
        }
        return false;
    }

    private void Release(long first, long end, bool exclusive)
    {
        lock (_gate)
        {
            _held.Remove((first, end, exclusive));
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>A held range; dispose to release it.</summary>
    public readonly struct Holder(SectorRangeLock owner, long first, long end, bool exclusive) : IDisposable
    {
        /// <inheritdoc />
        public void Dispose() => owner.Release(first, end, exclusive);
    }
}
