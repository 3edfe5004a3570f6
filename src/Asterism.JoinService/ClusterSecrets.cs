using Asterism.Attestation;
using Asterism.Crypto;

namespace Asterism.JoinService;

/// <summary>
/// What a control-plane node keeps on its own encrypted state disk and serves joining nodes from: the master
/// secret of the cluster's current key generation, the measurement salt and the attestation policy, and — while a
/// master-secret rotation is pending and this control plane holds it — the next generation's secret. Only ever held by
/// control-plane nodes.
/// </summary>
/// <remarks>
/// Rotation (issue #16 item 4, decision in src/Asterism.Node/README.md): the cluster ID never changes, so the
/// measurement secret that derives it — generation 1's — is kept as <see cref="ClusterMeasurementSecret"/> for the
/// cluster's life and handed to joiners; disk keys come from the generation's master secret
/// (<see cref="KeyDerivation.DeriveDiskKey(MasterSecret, string, int)"/>). Readers take copies
/// (<see cref="ForGeneration"/>), so <see cref="Promote"/> can zero the void secret while calls are in flight.
/// </remarks>
public sealed class ClusterSecrets : IDisposable
{
    private readonly Lock _lock = new();
    private readonly SecretBytes _clusterMeasurementSecret;
    private MasterSecret _current;
    private int _generation;
    private MasterSecret? _next;
    private int _nextGeneration;
    private bool _disposed;

    /// <summary>Generation-1 secrets: the cluster measurement secret derives from <paramref name="masterSecret"/>.</summary>
    public ClusterSecrets(MasterSecret masterSecret, byte[] measurementSalt, AttestationPolicy policy)
        : this(masterSecret, 1, null, measurementSalt, policy)
    {
    }

    /// <summary>
    /// Secrets of generation <paramref name="generation"/>; takes ownership of <paramref name="masterSecret"/> and
    /// <paramref name="clusterMeasurementSecret"/>. The latter may be null only for generation 1 (it is then derived).
    /// </summary>
    public ClusterSecrets(MasterSecret masterSecret, int generation, SecretBytes? clusterMeasurementSecret, byte[] measurementSalt, AttestationPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(masterSecret);
        ArgumentNullException.ThrowIfNull(measurementSalt);
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentOutOfRangeException.ThrowIfLessThan(generation, 1);
        if (clusterMeasurementSecret is null && generation != 1)
        {
            throw new ArgumentException("after a rotation the cluster measurement secret cannot be derived from the current master secret", nameof(clusterMeasurementSecret));
        }
        _current = masterSecret;
        _generation = generation;
        _clusterMeasurementSecret = clusterMeasurementSecret ?? KeyDerivation.DeriveMeasurementSecret(masterSecret);
        MeasurementSalt = measurementSalt;
        Policy = policy;
    }

    /// <summary>The generation of the current master secret (1 until a rotation completed).</summary>
    public int Generation
    {
        get
        {
            lock (_lock)
            {
                return _generation;
            }
        }
    }

    /// <summary>The pending rotation's generation this control plane holds the secret of, or 0.</summary>
    public int NextGeneration
    {
        get
        {
            lock (_lock)
            {
                return _nextGeneration;
            }
        }
    }

    /// <summary>Generation 1's measurement secret: derives the cluster ID, which stays for the cluster's life. Owned here.</summary>
    public ReadOnlySpan<byte> ClusterMeasurementSecret => _clusterMeasurementSecret.Span;

    public byte[] MeasurementSalt { get; }

    public AttestationPolicy Policy { get; }

    /// <summary>
    /// A copy of the master secret of <paramref name="generation"/> (the current or the pending one) that the caller
    /// disposes, or null when this control plane does not hold that generation.
    /// </summary>
    public MasterSecret? ForGeneration(int generation)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var secret = generation == _generation ? _current : generation == _nextGeneration ? _next : null;
            return secret is null ? null : MasterSecret.FromBytes(secret.Key, secret.Salt);
        }
    }

    /// <summary>
    /// The current generation and a copy of its secret the caller disposes, read together (a <see cref="Promote"/>
    /// between reading <see cref="Generation"/> and calling <see cref="ForGeneration"/> would otherwise find nothing).
    /// </summary>
    public (int Generation, MasterSecret Secret) CurrentCopy()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return (_generation, MasterSecret.FromBytes(_current.Key, _current.Salt));
        }
    }

    /// <summary>Holds <paramref name="next"/> (ownership taken) as the secret of pending generation <paramref name="generation"/>.</summary>
    public void SetNext(MasterSecret next, int generation)
    {
        ArgumentNullException.ThrowIfNull(next);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (generation != _generation + 1)
            {
                throw new ArgumentOutOfRangeException(nameof(generation), $"the next generation must be {_generation + 1}");
            }
            _next?.Dispose();
            _next = next;
            _nextGeneration = generation;
        }
    }

    /// <summary>The rotation completed: the next secret becomes current and the void one is zeroed. False when no next secret is held.</summary>
    public bool Promote()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_next is null)
            {
                return false;
            }
            _current.Dispose();
            _current = _next;
            _generation = _nextGeneration;
            _next = null;
            _nextGeneration = 0;
            return true;
        }
    }

    public override string ToString() => "[redacted]";

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            _current.Dispose();
            _next?.Dispose();
            _clusterMeasurementSecret.Dispose();
        }
    }
}
