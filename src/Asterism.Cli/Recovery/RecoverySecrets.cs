using Asterism.Crypto;

namespace Asterism.Cli.Recovery;

/// <summary>A master secret with the generation whose key check it derives.</summary>
public sealed record GenerationSecret(MasterSecret Master, int Generation);

/// <summary>
/// The master secrets one <c>recover</c> run may offer, newest generation first: one secret normally; during a
/// rotation that is pending in the workspace, the new and the old one, because a node may be on either (its keyslot
/// moves before its confirmation reaches the registry, and a node that was down has not moved at all). A node offered
/// the wrong generation answers "state disk key rejected" and keeps waiting, so the pusher offers the next one.
/// Every secret here derived its generation's key check; disposing this disposes them all (zeroes them).
/// </summary>
public sealed class RecoverySecrets : IDisposable
{
    private readonly List<GenerationSecret> _secrets;

    public RecoverySecrets(IEnumerable<GenerationSecret> secrets)
    {
        ArgumentNullException.ThrowIfNull(secrets);
        _secrets = [.. secrets.OrderByDescending(s => s.Generation)];
        if (_secrets.Count == 0)
        {
            throw new ArgumentException("at least one secret is needed", nameof(secrets));
        }
        if (_secrets.Select(s => s.Generation).Distinct().Count() != _secrets.Count)
        {
            throw new ArgumentException("one secret per generation", nameof(secrets));
        }
    }

    /// <summary>One secret of generation 1 (a cluster that never rotated, and older callers).</summary>
    public static RecoverySecrets Single(MasterSecret master, int generation = 1) => new([new GenerationSecret(master, generation)]);

    /// <summary>Newest generation first.</summary>
    public IReadOnlyList<GenerationSecret> InOrder => _secrets;

    /// <summary>The newest secret: the one the workspace's node record and registry copy are checked with first.</summary>
    public GenerationSecret Newest => _secrets[0];

    /// <summary>The measurement secret a node on <paramref name="secret"/>'s generation checks against its key check.</summary>
    public static SecretBytes MeasurementSecret(GenerationSecret secret)
    {
        ArgumentNullException.ThrowIfNull(secret);
        return KeyDerivation.DeriveMeasurementSecret(secret.Master);
    }

    /// <summary>The disk key of <paramref name="diskUuid"/> in <paramref name="secret"/>'s generation.</summary>
    public static SecretBytes DiskKey(GenerationSecret secret, string diskUuid)
    {
        ArgumentNullException.ThrowIfNull(secret);
        return KeyDerivation.DeriveDiskKey(secret.Master, diskUuid, secret.Generation);
    }

    /// <summary>
    /// Offers the secrets in turn (newest first) until one is not rejected by the node: <paramref name="attempt"/> is one
    /// recover call with one secret. A rejection by the node ("state disk key rejected", "measurement secret rejected")
    /// means this generation is not the node's and it still waits, so the next is tried; any other outcome is final.
    /// </summary>
    public async Task<PushResult> OfferInTurnAsync(Func<GenerationSecret, Task<PushResult>> attempt)
    {
        ArgumentNullException.ThrowIfNull(attempt);
        PushResult? last = null;
        var rejected = new List<int>();
        foreach (var secret in _secrets)
        {
            last = await attempt(secret).ConfigureAwait(false);
            if (last.Outcome != PushOutcome.KeyRejected || last.Detail == KeyOpenedDiskDetail)
            {
                return last;
            }
            rejected.Add(secret.Generation);
        }
        return _secrets.Count == 1
            ? last!
            : last! with { Detail = $"{last!.Detail} (generations {string.Join(" and ", rejected)} tried)" };
    }

    /// <summary>The node's answer when the key opened its disk but its state was unusable: another generation cannot help.</summary>
    internal const string KeyOpenedDiskDetail = "state disk unusable";

    public void Dispose()
    {
        foreach (var secret in _secrets)
        {
            secret.Master.Dispose();
        }
    }
}
