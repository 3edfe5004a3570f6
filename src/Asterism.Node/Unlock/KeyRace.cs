using System.Security.Cryptography;
using Asterism.Crypto;
using Asterism.Node.State;
using Asterism.StateFs;

namespace Asterism.Node.Unlock;

/// <summary>What the winning offer unlocked: its keys, the node state read from the disk and the mounted state.</summary>
public sealed record KeyRaceWin(ReceivedKeys Keys, NodeState State, NodeStateDirectory Directory);

/// <summary>
/// The reboot race between the RecoveryServer and the RejoinClient: the first delivered key that <b>actually
/// opens keyslot 0</b> (the state filesystem mounts with it) — and whose measurement secret derives the cluster ID
/// in the node state file on that filesystem — wins; every later offer is refused. A key that opens the disk but
/// fails the cluster check is unmounted again before the verdict. Verification is serialised, so concurrent offers
/// never both win.
/// </summary>
public sealed class KeyRace(IStateVolume volume)
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly TaskCompletionSource<KeyRaceWin> _winner = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes with the winning keys, the node state they unlocked and the mounted state filesystem.</summary>
    public Task<KeyRaceWin> Winner => _winner.Task;

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
        NodeStateDirectory? opened = null;
        try
        {
            if (IsDecided)
            {
                return KeyVerdict.AlreadyRecovered;
            }
            var diskKey = keys.DiskKey.ToArray();
            try
            {
                // One keyslot KDF: the mount unlocks keyslot 0 only and refuses a key that does not open it.
                opened = await volume.OpenAsync(diskKey, formatIfEmpty: false, cancellationToken);
            }
            catch (Exception ex) when (ex is StateFilesystemException or IOException or UnauthorizedAccessException)
            {
                return KeyVerdict.StoreUnreadable;
            }
            finally
            {
                CryptographicOperations.ZeroMemory(diskKey);
            }
            if (opened is null)
            {
                return KeyVerdict.DiskKeyRejected;
            }
            NodeState state;
            try
            {
                state = NodeState.Read(opened);
            }
            catch (Exception ex) when (ex is InvalidDataException or IOException or UnauthorizedAccessException)
            {
                return KeyVerdict.StoreUnreadable;
            }
            // The cluster ID (generation 1), or the key check of the generation the node state names or of the one
            // before it (a crash between the node-state write and the keyslot flip): opening keyslot 0 above stays
            // the decisive check; this one keeps a disk key from being accepted with another cluster's secret.
            if (!state.AcceptsMeasurementSecret(keys.MeasurementSecret.Span))
            {
                return KeyVerdict.MeasurementSecretRejected;
            }
            won = _winner.TrySetResult(new KeyRaceWin(keys, state, opened));
            return KeyVerdict.Accepted;
        }
        finally
        {
            if (!won)
            {
                keys.Dispose();
                if (opened is not null)
                {
                    await opened.DisposeAsync();
                }
            }
            _gate.Release();
        }
    }
}
