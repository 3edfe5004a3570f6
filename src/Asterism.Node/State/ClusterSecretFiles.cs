using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Asterism.Attestation;
using Asterism.Crypto;
using Asterism.JoinService;

namespace Asterism.Node.State;

/// <summary>
/// A control plane's cluster secrets as files on its state filesystem (every write atomic, durable, 0600; every read
/// bounded), so <see cref="ClusterSecrets"/> comes back with the right generation after any reboot or crash:
/// <list type="bullet">
/// <item><c>asterism/master_secret.json</c>: the current generation's master secret (Constellation's format).</item>
/// <item><c>asterism/master_secret.generation</c>: its generation, ASCII decimal; absent = 1 (disks from before rotation).</item>
/// <item><c>asterism/cluster_measurement_secret</c>: generation 1's measurement secret (32 bytes), which derives the stable
/// cluster ID; absent = derived from <c>master_secret.json</c>, valid only while that is generation 1's.</item>
/// <item><c>asterism/master_secret.next-genG.json</c>: a pending rotation's secret of generation G (the name carries G so a
/// promotion cut short is recognised whatever it had written).</item>
/// <item><c>asterism/attestation_policy.json</c>: the policy the JoinService enforces.</item>
/// </list>
/// Promotion (the rotation completed): <c>master_secret.json</c> := next, then the generation file := G, then the next file
/// is deleted. A cut after the first write leaves a next file equal to the current secret with a generation above the
/// recorded one; after the second, a next file whose generation is not above the recorded one. <see cref="Read"/>
/// finishes either.
/// </summary>
public static class ClusterSecretFiles
{
    /// <summary>The current master secret's generation (ASCII decimal).</summary>
    public const string GenerationFile = "asterism/master_secret.generation";

    /// <summary>Generation 1's measurement secret (raw 32 bytes).</summary>
    public const string ClusterMeasurementSecretFile = "asterism/cluster_measurement_secret";

    private const string NextPrefix = "master_secret.next-gen";
    private const string NextSuffix = ".json";

    /// <summary>The file of a pending rotation's secret of <paramref name="generation"/>.</summary>
    public static string NextFile(int generation) => "asterism/" + NextPrefix + generation.ToString(CultureInfo.InvariantCulture) + NextSuffix;

    /// <summary>First boot: the cluster measurement secret, the generation, the master secret and the policy.</summary>
    public static void Write(NodeStateDirectory state, ClusterSecrets secrets)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(secrets);
        StoreClusterMeasurementSecret(state, secrets);
        var generation = secrets.Generation;
        using (var current = secrets.ForGeneration(generation) ?? throw new InvalidOperationException("the cluster secrets hold no current secret"))
        {
            WriteSecret(state, NodeStateDirectory.MasterSecretFile, current);
        }
        WriteGeneration(state, generation);
        state.Write(NodeStateDirectory.PolicyFile, secrets.Policy.ToJson());
    }

    /// <summary>
    /// Loads the secrets: current generation, cluster measurement secret and a pending next secret; finishes a promotion
    /// a crash cut short. Throws <see cref="InvalidDataException"/> for missing or malformed files.
    /// </summary>
    public static ClusterSecrets Read(NodeStateDirectory state, NodeState node)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(node);
        var policyBytes = NodeState.ReadBounded(state, NodeStateDirectory.PolicyFile) ?? throw new InvalidDataException("the state filesystem holds no attestation policy");
        var policy = AttestationPolicy.FromJson(policyBytes);
        var generation = ReadGeneration(state);
        var master = ReadSecret(state, NodeStateDirectory.MasterSecretFile) ?? throw new InvalidDataException("the state filesystem holds no master secret");
        MasterSecret? next = null;
        SecretBytes? clusterMeasurementSecret = null;
        try
        {
            var (nextGeneration, nextSecret) = ReadNext(state, generation);
            next = nextSecret;
            if (next is not null && SameSecret(next, master))
            {
                // Cut between "master_secret.json := next" and the generation file: finish the promotion.
                generation = nextGeneration;
                WriteGeneration(state, generation);
                state.Delete(NextFile(nextGeneration));
                next.Dispose();
                next = null;
            }
            clusterMeasurementSecret = ReadClusterMeasurementSecret(state);
            if (clusterMeasurementSecret is null && generation != 1)
            {
                throw new InvalidDataException("the state filesystem holds no cluster measurement secret for a rotated master secret");
            }
            var secrets = new ClusterSecrets(master, generation, clusterMeasurementSecret, node.MeasurementSalt, policy);
            master = null;
            clusterMeasurementSecret = null;
            if (next is not null)
            {
                secrets.SetNext(next, nextGeneration);
                next = null;
            }
            return secrets;
        }
        finally
        {
            master?.Dispose();
            next?.Dispose();
            clusterMeasurementSecret?.Dispose();
        }
    }

    /// <summary>
    /// True when the next secret of <paramref name="generation"/> is on this state filesystem. Not the same as
    /// <see cref="ClusterSecrets.NextGeneration"/>: the JoinService holds a next secret in memory as soon as it opened the
    /// rotation's seal for a caller, which survives no reboot.
    /// </summary>
    public static bool HasNext(NodeStateDirectory state, int generation)
    {
        ArgumentNullException.ThrowIfNull(state);
        return File.Exists(state.PathOf(NextFile(generation)));
    }

    /// <summary>
    /// A rotation offer reached this control plane: keep generation 1's measurement secret (before the current secret
    /// can ever be replaced), then the next secret of <paramref name="generation"/> — on disk first, then in memory.
    /// Idempotent (a rerun after a crash writes the same files again).
    /// </summary>
    public static void StoreNext(NodeStateDirectory state, ClusterSecrets secrets, MasterSecret next, int generation)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(secrets);
        ArgumentNullException.ThrowIfNull(next);
        if (generation != secrets.Generation + 1)
        {
            throw new InvalidOperationException($"a rotation to generation {generation} does not follow this control plane's generation {secrets.Generation}");
        }
        if (!File.Exists(state.PathOf(ClusterMeasurementSecretFile)))
        {
            StoreClusterMeasurementSecret(state, secrets);
        }
        WriteSecret(state, NextFile(generation), next);
        secrets.SetNext(MasterSecret.FromBytes(next.Key, next.Salt), generation);
    }

    /// <summary>
    /// When the cluster's generation (etcd's <c>/asterism/keygeneration</c>) reached the held next secret's, makes it the
    /// current one on disk (see the class) and in memory. Returns the promoted generation, or 0.
    /// </summary>
    public static int PromoteIfCompleted(NodeStateDirectory state, ClusterSecrets secrets, int clusterGeneration)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(secrets);
        var generation = secrets.NextGeneration;
        if (generation == 0 || clusterGeneration < generation)
        {
            return 0;
        }
        using (var next = secrets.ForGeneration(generation) ?? throw new InvalidOperationException("the next secret vanished"))
        {
            WriteSecret(state, NodeStateDirectory.MasterSecretFile, next);
        }
        WriteGeneration(state, generation);
        state.Delete(NextFile(generation));
        secrets.Promote();
        return generation;
    }

    private static void StoreClusterMeasurementSecret(NodeStateDirectory state, ClusterSecrets secrets)
    {
        var bytes = secrets.ClusterMeasurementSecret.ToArray();
        try
        {
            state.Write(ClusterMeasurementSecretFile, bytes);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(bytes);
        }
    }

    private static SecretBytes? ReadClusterMeasurementSecret(NodeStateDirectory state)
    {
        var bytes = NodeState.ReadBounded(state, ClusterMeasurementSecretFile);
        if (bytes is null)
        {
            return null;
        }
        if (bytes.Length != KeyDerivation.KeyLength)
        {
            CryptographicOperations.ZeroMemory(bytes);
            throw new InvalidDataException("the cluster measurement secret must be 32 bytes");
        }
        return new SecretBytes(bytes);
    }

    private static void WriteGeneration(NodeStateDirectory state, int generation) =>
        state.Write(GenerationFile, Encoding.ASCII.GetBytes(generation.ToString(CultureInfo.InvariantCulture)));

    private static int ReadGeneration(NodeStateDirectory state)
    {
        var bytes = NodeState.ReadBounded(state, GenerationFile);
        if (bytes is null)
        {
            return 1;
        }
        return ParseGeneration(Encoding.ASCII.GetString(bytes)) ?? throw new InvalidDataException("the master secret's generation file is malformed");
    }

    private static int? ParseGeneration(string text) =>
        text.Length is > 0 and <= 7 && text.All(char.IsAsciiDigit) && int.Parse(text, CultureInfo.InvariantCulture) is var g && g is >= 1 and <= KeyDerivation.MaxGeneration
            ? g
            : null;

    /// <summary>The pending next secret (generation current + 1), deleting leftovers of a finished promotion.</summary>
    private static (int Generation, MasterSecret? Secret) ReadNext(NodeStateDirectory state, int current)
    {
        var folder = state.PathOf("asterism");
        if (!Directory.Exists(folder))
        {
            return (0, null);
        }
        var found = 0;
        foreach (var path in Directory.EnumerateFiles(folder, NextPrefix + "*" + NextSuffix).Take(16))
        {
            var name = Path.GetFileName(path);
            var generation = ParseGeneration(name[NextPrefix.Length..^NextSuffix.Length])
                ?? throw new InvalidDataException($"unexpected file asterism/{name}");
            if (generation <= current)
            {
                // Cut after the generation file was written: the promotion is done, only the delete was missing.
                state.Delete(NextFile(generation));
                continue;
            }
            if (generation != current + 1 || found != 0)
            {
                throw new InvalidDataException($"asterism/{name} does not follow the master secret's generation {current}");
            }
            found = generation;
        }
        return found == 0 ? (0, null) : (found, ReadSecret(state, NextFile(found)));
    }

    private static void WriteSecret(NodeStateDirectory state, string relative, MasterSecret secret)
    {
        var json = secret.ToJson();
        try
        {
            state.Write(relative, json);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(json);
        }
    }

    private static MasterSecret? ReadSecret(NodeStateDirectory state, string relative)
    {
        var bytes = NodeState.ReadBounded(state, relative);
        if (bytes is null)
        {
            return null;
        }
        try
        {
            return MasterSecret.Parse(bytes);
        }
        catch (MasterSecretException e)
        {
            throw new InvalidDataException($"{relative}: {e.Message}");
        }
        finally
        {
            CryptographicOperations.ZeroMemory(bytes);
        }
    }

    private static bool SameSecret(MasterSecret a, MasterSecret b) =>
        CryptographicOperations.FixedTimeEquals(a.Key, b.Key) & CryptographicOperations.FixedTimeEquals(a.Salt, b.Salt);
}
