using System.Security.Cryptography;
using Asterism.Crypto;
using Asterism.Disk;

namespace Asterism.Node.Unlock;

/// <summary>
/// The reboot race between the RecoveryServer and the RejoinClient: the first delivered key that <b>actually
/// opens keyslot 0</b> — and whose measurement secret derives this node's cluster ID — wins; every later offer is
/// refused. Verification is serialised, so concurrent offers never both win.
/// </summary>
public sealed class KeyRace(StateDisk disk)
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly TaskCompletionSource<(ReceivedKeys Keys, NodeState State)> _winner =
        new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes with the winning keys and the node state they unlocked.</summary>
    public Task<(ReceivedKeys Keys, NodeState State)> Winner => _winner.Task;

    public bool IsDecided => _winner.Task.IsCompleted;

    /// <summary>
    /// Verifies the keys against the disk and, when they open it, makes them the winner (taking ownership of
    /// <paramref name="keys"/>). A refused offer is disposed here.
    /// </summary>
    public async Task<KeyVerdict> OfferAsync(ReceivedKeys keys, CancellationToken cancellationToken)
    {
        try
        {
            await _gate.WaitAsync(cancellationToken);
        }
        catch
        {
            keys.Dispose();
            throw;
        }
        var won = false;
        try
        {
            if (IsDecided)
            {
                return KeyVerdict.AlreadyRecovered;
            }
            // TryUnlock runs the keyslot KDF once and keeps the volume key only when the passphrase opens keyslot 0.
            if (!disk.TryUnlock(keys.DiskKey.Span))
            {
                return KeyVerdict.DiskKeyRejected;
            }
            NodeState state;
            try
            {
                state = NodeState.Read(disk.Store);
            }
            catch (Exception ex) when (ex is InvalidDataException or IOException or InvalidOperationException or RecordStoreCorruptException)
            {
                return KeyVerdict.StoreUnreadable;
            }
            var clusterId = KeyDerivation.DeriveClusterId(keys.MeasurementSecret.Span, state.MeasurementSalt);
            if (!CryptographicOperations.FixedTimeEquals(clusterId, state.ClusterId))
            {
                return KeyVerdict.MeasurementSecretRejected;
            }
            won = _winner.TrySetResult((keys, state));
            return KeyVerdict.Accepted;
        }
        finally
        {
            if (!won)
            {
                keys.Dispose();
            }
            _gate.Release();
        }
    }
}
