using Asterism.ControlPlane;
using Asterism.Crypto;

namespace Asterism.JoinService;

/// <summary>
/// What a rejoin may hand out, as the gate decided it before its Release audit entry: the caller's disk key and
/// measurement secret of its registry generation and, only while a rotation to a higher generation is pending, those of
/// the target generation too (the node's keyslot may have moved before its confirmation reached the registry).
/// </summary>
/// <param name="Generation">The caller's registry generation (<see cref="NodeRecord.KeyGeneration"/>; 0 read as 1).</param>
/// <param name="Secret">That generation's master secret: a copy this release owns and zeroes.</param>
/// <param name="NextGeneration">The pending rotation's target generation, or 0.</param>
/// <param name="NextSecret">Its master secret (a copy this release owns), or null.</param>
public sealed record RejoinRelease(int Generation, MasterSecret Secret, int NextGeneration = 0, MasterSecret? NextSecret = null) : IDisposable
{
    /// <inheritdoc />
    public override string ToString() => $"rejoin release of generation {Generation}" + (NextGeneration > 0 ? $" and {NextGeneration}" : "") + " [secrets redacted]";

    /// <inheritdoc />
    public void Dispose()
    {
        Secret.Dispose();
        NextSecret?.Dispose();
    }
}

/// <summary>What a first join may hand out: the disk key of <paramref name="Generation"/> (the generation the registry
/// record was made at), and for a control plane with a gate its etcd ticket.</summary>
/// <param name="Generation">The generation of <paramref name="Secret"/>, which the node's record carries.</param>
/// <param name="Secret">That generation's master secret: a copy this release owns and zeroes.</param>
/// <param name="ControlPlane">A control plane's etcd ticket (its owner is <see cref="JoinApiService"/>), null for a worker or without a gate.</param>
public sealed record JoinRelease(int Generation, MasterSecret Secret, ControlPlaneTicket? ControlPlane = null) : IDisposable
{
    /// <inheritdoc />
    public override string ToString() => $"join release of generation {Generation} [secrets redacted]";

    /// <summary>Zeroes the secret copy only; the ticket's owner disposes it.</summary>
    public void Dispose() => Secret.Dispose();
}

/// <summary>
/// Which master secret of a generation this control plane can serve (issue #16 item 4): its current or next secret
/// (<see cref="ClusterSecrets.ForGeneration"/>), or — for a pending rotation's target it does not hold yet — the
/// rotation record's sealed secret opened with generation From's secret, which is then kept
/// (<see cref="ClusterSecrets.SetNext"/>) so later calls skip the seal. Never derives anything else: a generation it
/// cannot serve is null with the reason, and the caller refuses.
/// </summary>
public static class GenerationSecrets
{
    /// <summary>A copy of generation <paramref name="generation"/>'s secret the caller disposes, or null and <paramref name="refusal"/>.</summary>
    public static MasterSecret? Resolve(ClusterSecrets secrets, int generation, RotationRecord? pending, out string refusal)
    {
        ArgumentNullException.ThrowIfNull(secrets);
        refusal = "";
        if (secrets.ForGeneration(generation) is { } held)
        {
            return held;
        }
        if (pending is null || generation != pending.To)
        {
            refusal = generation < secrets.Generation
                ? $"key generation {generation} is void on this control plane"
                : $"this control plane does not hold key generation {generation} yet";
            return null;
        }
        using var from = secrets.ForGeneration(pending.From);
        if (from is null)
        {
            refusal = $"this control plane does not hold generation {pending.From}'s secret the pending rotation is sealed under";
            return null;
        }
        var opened = RotationSeal.Open(from, pending.WrappedSecret, pending.From);
        if (opened is null)
        {
            refusal = $"the pending rotation's secret does not open under generation {pending.From}'s secret";
            return null;
        }
        if (pending.From == secrets.Generation)
        {
            var kept = MasterSecret.FromBytes(opened.Key, opened.Salt);
            try
            {
                secrets.SetNext(kept, pending.To);
            }
            catch (ArgumentOutOfRangeException)
            {
                // Promoted meanwhile: the copy in hand is still the target's secret; only the cache is skipped.
                kept.Dispose();
            }
        }
        return opened;
    }
}
