using System.Security.Cryptography;
using Asterism.Crypto;
using Asterism.Disk;
using Asterism.JoinService;
using Asterism.Node.State;
using Asterism.Protocol;
using Asterism.Protocol.Join;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Rotation;

/// <summary>Where a test cuts a rotation step short (a crash of the node at that point).</summary>
public enum RotationStepPoint
{
    /// <summary>After a control plane stored the next secret, before the node state names the new generation.</summary>
    BeforeStateWrite,

    /// <summary>The node state names the new generation; keyslot 0 still holds the old key.</summary>
    AfterStateWrite,

    /// <summary>Keyslot 0 holds the new key; the registry still says the old generation.</summary>
    AfterFlip,

    /// <summary>The registry has the confirmation.</summary>
    AfterConfirm,
}

/// <summary>
/// One running node's part of a master-secret rotation, against one control plane: ask (RotateKey with generation 0);
/// on an offer of generation G — a control plane first stores the next master secret (<see cref="ClusterSecretFiles.StoreNext"/>)
/// — write <c>keyGeneration</c>/<c>keyCheck</c> into the node state (the old check kept as <c>previousKeyCheck</c>),
/// move keyslot 0 to the new key (<see cref="RunningDiskKey.MoveTo"/>), then confirm G. Every step is idempotent, so a
/// crash anywhere is finished by the next run after a reboot: the node state accepts the old and the new measurement
/// secret, keyslot 0 opens with exactly one of the two keys (the rejoin answer carries both while the rotation is
/// pending), and an already moved keyslot is only confirmed.
/// </summary>
public sealed class KeyRotationStep
{
    private readonly StateDisk _disk;
    private readonly NodeStateDirectory _directory;
    private readonly RunningDiskKey _key;
    private readonly ClusterSecrets? _secrets;
    private readonly string _diskUuid;
    private readonly ILogger _log;

    /// <summary>A step for the running node: its disk, mounted state, node state, running key and (control planes) secrets.</summary>
    public KeyRotationStep(StateDisk disk, NodeStateDirectory directory, NodeState state, RunningDiskKey key, ClusterSecrets? secrets, ILoggerFactory loggers)
    {
        ArgumentNullException.ThrowIfNull(disk);
        ArgumentNullException.ThrowIfNull(loggers);
        _disk = disk;
        _directory = directory ?? throw new ArgumentNullException(nameof(directory));
        State = state ?? throw new ArgumentNullException(nameof(state));
        _key = key ?? throw new ArgumentNullException(nameof(key));
        _secrets = secrets;
        _diskUuid = disk.Uuid;
        _log = loggers.CreateLogger(NodeLog.KeyRotation.Category);
    }

    /// <summary>The node state as last written.</summary>
    public NodeState State { get; private set; }

    /// <summary>Test seam: called at each <see cref="RotationStepPoint"/>; a throw there is a crash at that point.</summary>
    internal Action<RotationStepPoint>? AtPoint { get; init; }

    /// <summary>
    /// Asks through <paramref name="call"/> (one control plane; the caller bounds each call) and carries out an offer.
    /// Returns the generation confirmed, or 0 when nothing is pending for this node.
    /// </summary>
    public async Task<int> RunAsync(string endpoint, Func<RotateKeyRequest, Task<RotateKeyResponse>> call, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(call);
        var offer = await call(new RotateKeyRequest { DiskUuid = _diskUuid });
        int generation;
        try
        {
            if (offer.Generation == 0)
            {
                return 0;
            }
            generation = Validate(offer);
            NodeLog.KeyRotation.OfferReceived(_log, generation, endpoint);
            if (_secrets is not null)
            {
                StoreNextSecret(offer, generation);
            }
            AtPoint?.Invoke(RotationStepPoint.BeforeStateWrite);
            var keyCheck = offer.KeyCheck.ToByteArray();
            if (State.KeyGeneration != generation || !CryptographicOperations.FixedTimeEquals(State.EffectiveKeyCheck, keyCheck))
            {
                // Before the keyslot moves: whichever key it then holds, the state accepts its measurement secret.
                var moved = State.WithKeyGeneration(generation, keyCheck);
                moved.WriteTo(_directory);
                State = moved;
                NodeLog.KeyRotation.StateWritten(_log, generation);
            }
            AtPoint?.Invoke(RotationStepPoint.AfterStateWrite);
            var result = _key.MoveTo(_disk, offer.StateDiskKey.Span);
            if (result == DiskKeyRotationResult.Rejected)
            {
                NodeLog.KeyRotation.KeyslotRefused(_log, generation);
                throw new InvalidOperationException($"keyslot 0 opens with neither the running key nor generation {generation}'s: not confirmed");
            }
            NodeLog.KeyRotation.KeyslotMoved(_log, generation, result.ToString());
        }
        finally
        {
            SecretFields.Zero(offer.StateDiskKey, offer.MasterKey, offer.MasterSalt);
        }
        AtPoint?.Invoke(RotationStepPoint.AfterFlip);
        cancellationToken.ThrowIfCancellationRequested();
        await call(new RotateKeyRequest { DiskUuid = _diskUuid, ConfirmGeneration = (uint)generation });
        NodeLog.KeyRotation.Confirmed(_log, generation, endpoint);
        AtPoint?.Invoke(RotationStepPoint.AfterConfirm);
        return generation;
    }

    /// <summary>
    /// A control plane: when <paramref name="clusterGeneration"/> (etcd's <c>/asterism/keygeneration</c>) reached the next
    /// secret's generation, promote it (<see cref="ClusterSecretFiles.PromoteIfCompleted"/>). Returns the promoted
    /// generation or 0; asks etcd only while a next secret is held.
    /// </summary>
    public async Task<int> PromoteIfCompletedAsync(Func<CancellationToken, Task<int>> clusterGeneration, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(clusterGeneration);
        if (_secrets is null || _secrets.NextGeneration == 0)
        {
            return 0;
        }
        var promoted = ClusterSecretFiles.PromoteIfCompleted(_directory, _secrets, await clusterGeneration(cancellationToken));
        if (promoted != 0)
        {
            NodeLog.KeyRotation.Promoted(_log, promoted);
        }
        return promoted;
    }

    private int Validate(RotateKeyResponse offer)
    {
        if (offer.Generation > KeyDerivation.MaxGeneration || offer.Generation < 2)
        {
            throw new InvalidDataException("rotation offer names an impossible key generation");
        }
        if (offer.StateDiskKey.Length != KeyDerivation.KeyLength || offer.KeyCheck.Length != KeyDerivation.KeyLength)
        {
            throw new InvalidDataException("rotation offer has a key or key check of the wrong length");
        }
        var generation = (int)offer.Generation;
        if (generation < State.KeyGeneration)
        {
            throw new InvalidDataException($"rotation offer to generation {generation}, but this node is at {State.KeyGeneration}");
        }
        if (_secrets is not null && !ClusterSecretFiles.HasNext(_directory, generation) && (offer.MasterKey.IsEmpty || offer.MasterSalt.IsEmpty))
        {
            // A control plane must hold the next secret before its own keyslot moves: it serves the new generation's
            // keys to rejoining nodes and promotes it at completion.
            throw new InvalidDataException("rotation offer to a control plane lacks the next master secret");
        }
        return generation;
    }

    private void StoreNextSecret(RotateKeyResponse offer, int generation)
    {
        // On disk, not in memory: this control plane's own JoinService may already hold the next secret (it opened the
        // seal for a caller), but only the file survives a crash after the keyslot moved.
        if (ClusterSecretFiles.HasNext(_directory, generation))
        {
            return;
        }
        MasterSecret next;
        try
        {
            next = MasterSecret.FromBytes(offer.MasterKey.Span, offer.MasterSalt.Span);
        }
        catch (MasterSecretException e)
        {
            throw new InvalidDataException("rotation offer carries an invalid master secret: " + e.Message);
        }
        using (next)
        {
            ClusterSecretFiles.StoreNext(_directory, _secrets!, next, generation);
        }
        NodeLog.KeyRotation.NextSecretStored(_log, generation);
    }
}
