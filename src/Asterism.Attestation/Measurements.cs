using System.Collections;

namespace Asterism.Attestation;

/// <summary>
/// Expected PCR values by index (0-23). Only configured indices are compared, in ascending order;
/// an enforced mismatch refuses, a warn-only mismatch yields a warning.
/// </summary>
public sealed class Measurements : IReadOnlyDictionary<int, Measurement>
{
    public const int MaxIndex = 23;

    /// <summary>The PCR that an initialized node has extended with its cluster ID.</summary>
    public const int ClusterIdIndex = 15;

    private readonly SortedDictionary<int, Measurement> _entries;

    public Measurements() => _entries = [];

    public Measurements(IEnumerable<KeyValuePair<int, Measurement>> entries)
    {
        _entries = [];
        foreach (var (index, m) in entries)
        {
            CheckIndex(index);
            _entries[index] = m;
        }
    }

    public static Measurements Empty { get; } = new();

    /// <summary>A copy with <paramref name="index"/> set (replacing any existing entry).</summary>
    public Measurements With(int index, Measurement measurement)
    {
        CheckIndex(index);
        var copy = new Measurements(_entries);
        copy._entries[index] = measurement;
        return copy;
    }

    /// <summary>
    /// A copy that enforces PCR 15 = 32 zero bytes: join, rejoin and recovery accept only nodes that have not yet
    /// received their keys in this boot.
    /// </summary>
    public Measurements WithZeroPcr15() => With(ClusterIdIndex, Measurement.Zero());

    /// <summary>
    /// A copy that enforces PCR 15 = the value a node's boot reaches once it measured <paramref name="clusterId"/>
    /// into a zero PCR 15 (one event: SHA-256(0³² ‖ SHA-256(cluster ID))), i.e. a node of this cluster that is
    /// running with its keys. Only for calls a running node makes (rotation); never for key release.
    /// </summary>
    public Measurements WithClusterIdPcr15(ReadOnlySpan<byte> clusterId) => With(ClusterIdIndex, new Measurement(ClusterIdPcr15(clusterId)));

    /// <summary>SHA-256(0³² ‖ SHA-256(<paramref name="clusterId"/>)): PCR 15 after the one cluster-ID event of a boot.</summary>
    public static byte[] ClusterIdPcr15(ReadOnlySpan<byte> clusterId)
    {
        if (clusterId.IsEmpty)
        {
            throw new ArgumentException("the cluster ID must not be empty", nameof(clusterId));
        }
        Span<byte> buffer = stackalloc byte[2 * Measurement.Length];
        buffer[..Measurement.Length].Clear();
        System.Security.Cryptography.SHA256.HashData(clusterId, buffer[Measurement.Length..]);
        return System.Security.Cryptography.SHA256.HashData(buffer);
    }

    /// <summary>Compares actual PCR values (index → 32 bytes) against the configured indices, ascending.</summary>
    public MeasurementComparison Compare(IReadOnlyDictionary<int, byte[]> actual)
    {
        ArgumentNullException.ThrowIfNull(actual);
        List<string>? errors = null;
        List<string>? warnings = null;
        foreach (var (index, expected) in _entries)
        {
            string? message = null;
            if (!actual.TryGetValue(index, out var value) || value is null)
            {
                message = $"missing measurement value for index {index}";
            }
            else if (!expected.Matches(value))
            {
                message = $"untrusted measurement value {Convert.ToHexStringLower(value)} at index {index}";
            }
            if (message is null)
            {
                continue;
            }
            if (expected.WarnOnly)
            {
                (warnings ??= []).Add(message);
            }
            else
            {
                (errors ??= []).Add(message);
            }
        }
        return new MeasurementComparison(errors ?? [], warnings ?? []);
    }

    public int Count => _entries.Count;
    public IEnumerable<int> Keys => _entries.Keys;
    public IEnumerable<Measurement> Values => _entries.Values;
    public Measurement this[int key] => _entries[key];
    public bool ContainsKey(int key) => _entries.ContainsKey(key);
    public bool TryGetValue(int key, out Measurement value) => _entries.TryGetValue(key, out value!);
    public IEnumerator<KeyValuePair<int, Measurement>> GetEnumerator() => _entries.GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private static void CheckIndex(int index)
    {
        if (index is < 0 or > MaxIndex)
        {
            throw new ArgumentOutOfRangeException(nameof(index), index, $"measurement index must be 0-{MaxIndex}");
        }
    }
}

/// <summary>The outcome of comparing PCR values with <see cref="Measurements"/>.</summary>
public sealed record MeasurementComparison(IReadOnlyList<string> Errors, IReadOnlyList<string> Warnings)
{
    public bool Passed => Errors.Count == 0;

    /// <summary>"measurement validation failed:" followed by one error per line, or empty when passed.</summary>
    public string ErrorText => Passed ? "" : "measurement validation failed:\n" + string.Join('\n', Errors);
}
