using System.Security.Cryptography;
using Asterism.Attestation;
using Asterism.Crypto;
using Asterism.Disk;
using Asterism.JoinService;
using Asterism.Logging;
using Asterism.Node.Etcd;
using Asterism.Node.State;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Boot;

/// <summary>Keys a fresh node received from init (first control-plane node) or from a join ticket.</summary>
public sealed class FirstBootKeys : IDisposable
{
    public required SecretBytes DiskKey { get; init; }

    public required SecretBytes MeasurementSecret { get; init; }

    public required byte[] MeasurementSalt { get; init; }

    /// <summary>The master-secret generation <see cref="DiskKey"/> comes from (a join during or after a rotation: above 1).</summary>
    public int KeyGeneration { get; init; } = 1;

    /// <summary>
    /// DeriveKeyCheck of that generation's master secret; null for generation 1, whose check is the cluster ID the
    /// measurement secret derives.
    /// </summary>
    public byte[]? KeyCheck { get; init; }

    /// <summary>Control-plane nodes only.</summary>
    public ClusterSecrets? ClusterSecrets { get; init; }

    /// <summary>A joining control plane: the cluster CA's key (PEM) from its ticket; null at init, which makes the CA.</summary>
    public SecretBytes? EtcdCaKey { get; init; }

    /// <summary>A joining control plane: the cluster CA's certificate (PEM).</summary>
    public byte[]? EtcdCaCertificate { get; init; }

    /// <summary>A joining control plane: the etcd membership its learner starts with.</summary>
    public IReadOnlyList<string> EtcdInitialCluster { get; init; } = [];

    public override string ToString() => "[redacted]";

    public void Dispose()
    {
        DiskKey.Dispose();
        MeasurementSecret.Dispose();
        EtcdCaKey?.Dispose();
    }
}

/// <summary>
/// What a completed first boot leaves the boot flow: the node state, the secrets, the mounted state filesystem and a
/// copy of the disk key keyslot 0 now holds (the running node keeps it to move the keyslot at a rotation; the boot flow
/// owns and disposes it).
/// </summary>
public sealed record FirstBootResult(NodeState State, ClusterSecrets? Secrets, NodeStateDirectory Directory, SecretBytes DiskKey);

/// <summary>
/// Turns a freshly formatted disk into an initialized one, once: extend PCR 15 with the cluster ID (so this boot
/// can no longer obtain keys), switch keyslot 0 from the random initial passphrase to the derived disk key, create
/// the ext4 state filesystem and mount it, write the control-plane secrets and the node state as files (each
/// atomic and durable), and set the token to initialized — last, so a crash before it makes the next boot reformat.
/// </summary>
public sealed class FirstBootSetup(StateDisk disk, IStateVolume volume, byte[] initialPassphrase, NodeOptions options, IPcrBank pcrs, ILoggerFactory loggers)
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ILogger _log = loggers.CreateLogger(NodeLog.SetupManager.Category);
    private readonly TaskCompletionSource<FirstBootResult> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task<FirstBootResult> Completed => _done.Task;

    public bool IsDone => _done.Task.IsCompleted;

    /// <summary>Applies <paramref name="keys"/>; returns null when another path already initialized the node.</summary>
    public async Task<FirstBootResult?> ApplyAsync(FirstBootKeys keys, string source, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (IsDone)
            {
                return null;
            }
            var clusterId = KeyDerivation.DeriveClusterId(keys.MeasurementSecret.Span, keys.MeasurementSalt);
            await pcrs.MeasureEventAsync(Measurements.ClusterIdIndex, clusterId, cancellationToken);
            try
            {
                return await ApplyAsync(keys, source, clusterId, cancellationToken);
            }
            catch (Exception ex)
            {
                // PCR 15 has moved: this boot can never obtain keys again. Fail the boot; the token is still false,
                // so the next boot reformats and starts over.
                _done.TrySetException(new InvalidOperationException("first-boot setup failed after PCR 15 was extended", ex));
                throw;
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task<FirstBootResult> ApplyAsync(FirstBootKeys keys, string source, byte[] clusterId, CancellationToken cancellationToken)
    {
        if (disk.ChangePassphrase(initialPassphrase, keys.DiskKey.Span) != KeyCheckResult.Accepted)
        {
            throw new InvalidOperationException("the state disk refused its initial passphrase");
        }
        CryptographicOperations.ZeroMemory(initialPassphrase);
        var diskKey = keys.DiskKey.ToArray();
        NodeStateDirectory? directory;
        try
        {
            directory = await volume.OpenAsync(diskKey, formatIfEmpty: true, cancellationToken);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(diskKey);
        }
        if (directory is null)
        {
            throw new InvalidOperationException("the state disk does not open with its new key");
        }
        try
        {
            var state = new NodeState
            {
                Role = options.Role,
                NodeName = options.Name,
                MeasurementSalt = keys.MeasurementSalt,
                ClusterId = clusterId,
                KeyGeneration = keys.KeyGeneration,
                KeyCheck = keys.KeyCheck,
            };
            // Secrets first, node state after: every file is durable when written, and the token (set last) is the
            // commit point — a power cut before it makes the next boot reformat, so a half-written set is never read.
            if (keys.ClusterSecrets is not null)
            {
                NodeState.WriteClusterSecrets(directory, keys.ClusterSecrets);
                // The etcd cluster CA lives beside the master secret: made here at init (before init answers, so the
                // cluster API can issue the admin credential from it), received in the ticket by a joining control plane.
                if (keys.EtcdCaKey is null || keys.EtcdCaCertificate is null)
                {
                    NodeEtcd.CreateCa(directory, Convert.ToHexStringLower(clusterId.AsSpan(0, 8)));
                }
                else
                {
                    NodeEtcd.StoreFromTicket(directory, keys.EtcdCaKey.Span, keys.EtcdCaCertificate, keys.EtcdInitialCluster);
                }
            }
            state.WriteTo(directory);
            disk.SetInitialized(true);
            NodeLog.SetupManager.StateDiskInitialized(_log, disk.Uuid, source);
            var result = new FirstBootResult(state, keys.ClusterSecrets, directory, SecretBytes.CopyOf(keys.DiskKey.Span));
            _done.TrySetResult(result);
            return result;
        }
        catch
        {
            await directory.DisposeAsync();
            throw;
        }
    }
}
