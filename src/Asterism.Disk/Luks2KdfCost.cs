using System.Globalization;
using System.Text;

namespace Asterism.Disk;

/// <summary>
/// The work a key attempt costs, in one unit for every KDF: one <b>unit</b> is one PBKDF2-HMAC-SHA256 iteration
/// producing one 32-byte block (≈ 0.44 µs measured here). An Argon2 pass over one 1 KiB block costs
/// <see cref="Argon2BlockUnits"/> units. A header's cost is the sum over its keyslots of what trying each one costs
/// (keyslot KDF + volume key digest + anti-forensic merge), so no choice of slots to try can exceed it; headers
/// over <see cref="DefaultHeaderBudget"/> are refused before any KDF runs.
/// </summary>
public static class Luks2KdfCost
{
    /// <summary>
    /// Units per Argon2 block pass: the managed Argon2 took 2.3–3.5 µs of CPU per 1 KiB block on one lane with
    /// 1 GiB of memory, five to eight PBKDF2 block-iterations; we charge the upper end. Lanes split the same memory, so they add parallelism, not work: a
    /// header's lane count never lowers its cost (the worst case is one lane on one core).
    /// </summary>
    public const long Argon2BlockUnits = 8;

    /// <summary>Anti-forensic merge of a 64-byte key over 4000 stripes: 8000 SHA-256 diffusions (charged as one unit each).</summary>
    public const long AfMergeUnits = 2L * Luks2Metadata.Stripes;

    /// <summary>
    /// Default budget of one header: 48 Mi units (6 GiB-passes of Argon2 equivalent; at most ≈ 21 s of CPU measured
    /// on this project's test machine, see the README). It opens cryptsetup's default argon2id slot (1 GiB × 4 passes = 32 Mi units) and 32 of
    /// Asterism's PBKDF2 slots (≈ 11,000 units each), not two default argon2id slots.
    /// </summary>
    public const long DefaultHeaderBudget = 48L * 1024 * 1024;

    /// <summary>Units of one run of a keyslot's KDF (its 64-byte area key is two PBKDF2 blocks).</summary>
    public static long OfKdf(Luks2Kdf kdf)
    {
        ArgumentNullException.ThrowIfNull(kdf);
        return kdf.IsArgon2
            ? (long)kdf.Iterations * kdf.MemoryKiB * Argon2BlockUnits
            : (long)kdf.Iterations * (Luks2Metadata.KeyBytes / 32);
    }

    /// <summary>Units of trying one keyslot: its KDF, the 32-byte volume key digest and the AF merge.</summary>
    public static long OfAttempt(Luks2Kdf kdf, Luks2Digest digest)
    {
        ArgumentNullException.ThrowIfNull(digest);
        return OfKdf(kdf) + digest.Iterations + AfMergeUnits;
    }

    /// <summary>Units of trying every keyslot of <paramref name="metadata"/> once: the most any key attempt can spend.</summary>
    public static long OfHeader(Luks2Metadata metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        return metadata.Keyslots.Values.Sum(k => OfAttempt(k.Kdf, metadata.Digest));
    }

    /// <summary>
    /// Throws <see cref="Luks2HeaderException"/> (<see cref="Luks2HeaderError.KdfBudgetExceeded"/>) when trying every
    /// keyslot would cost more than <paramref name="budget"/>; the message names the slots, their costs and the budget.
    /// </summary>
    internal static void Check(IReadOnlyCollection<Luks2Keyslot> keyslots, Luks2Digest digest, long budget)
    {
        var costs = keyslots.Select(k => (k.Id, k.Kdf, Cost: OfAttempt(k.Kdf, digest))).ToList();
        var total = costs.Sum(c => c.Cost);
        if (total <= budget)
        {
            return;
        }
        var worst = costs.MaxBy(c => c.Cost);
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"trying keyslots {string.Join(",", costs.Select(c => c.Id))} would cost {total} KDF units, ");
        text.Append(CultureInfo.InvariantCulture, $"over the per-header budget of {budget} (");
        // One figure when every slot costs the same (the usual attack), else each slot's.
        text.Append(costs.DistinctBy(c => c.Cost).Count() == 1
            ? string.Create(CultureInfo.InvariantCulture, $"each {worst.Cost}")
            : string.Join(", ", costs.Select(c => string.Create(CultureInfo.InvariantCulture, $"{c.Id}: {c.Cost}"))));
        text.Append(CultureInfo.InvariantCulture, $"; most expensive keyslot {worst.Id}: {Describe(worst.Kdf)}); no KDF was run");
        throw new Luks2HeaderException(Luks2HeaderError.KdfBudgetExceeded, text.ToString());
    }

    /// <summary>A short description of a KDF's parameters (no salt).</summary>
    public static string Describe(Luks2Kdf kdf)
    {
        ArgumentNullException.ThrowIfNull(kdf);
        return kdf.IsArgon2
            ? string.Create(CultureInfo.InvariantCulture, $"{kdf.Type} {kdf.MemoryKiB} KiB × {kdf.Iterations} passes, {kdf.Parallelism} lanes")
            : string.Create(CultureInfo.InvariantCulture, $"pbkdf2-sha256 {kdf.Iterations} iterations");
    }
}
