using Asterism.Protocol;
using Asterism.Protocol.NodeStatus;

namespace Asterism.Node.BootProgress;

/// <summary>The node's boot phase as the status call reports it. Thread-safe; carries no secret.</summary>
public sealed class BootStatusTracker(NodeOptions options, TimeProvider time)
{
    private readonly Lock _lock = new();
    private string _phase = BootPhases.Booting;
    private DateTimeOffset? _waitingSince;
    private DateTimeOffset? _bootedAt;
    private int _rejoinAttempts;
    private string _lastError = "";
    private string _diskUuid = "";
    private Func<CancellationToken, Task<Asterism.ControlPlane.QuorumStatus?>>? _etcd;

    /// <summary>A control plane's quorum probe while its etcd member runs; null removes it.</summary>
    public void SetEtcd(Func<CancellationToken, Task<Asterism.ControlPlane.QuorumStatus?>>? probe)
    {
        lock (_lock)
        {
            _etcd = probe;
        }
    }

    /// <summary>
    /// The snapshot plus, on a control plane, its etcd member's view of the quorum, bounded to 1 s: callers (the CLI's
    /// status probe) give up after 2 s, and a member without quorum — exactly when the operator asks — would otherwise
    /// use up the whole deadline and the node would show as not answering at all.
    /// </summary>
    public async Task<BootStatus> SnapshotWithEtcdAsync(CancellationToken cancellationToken)
    {
        var status = Snapshot();
        Func<CancellationToken, Task<Asterism.ControlPlane.QuorumStatus?>>? probe;
        lock (_lock)
        {
            probe = _etcd;
        }
        if (probe is not null)
        {
            using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            bounded.CancelAfter(TimeSpan.FromSeconds(1));
            var quorum = await probe(bounded.Token);
            status.Etcd = quorum?.Message ?? "etcd: member not answering";
            status.EtcdHasQuorum = quorum?.HasQuorum ?? false;
        }
        return status;
    }

    public void SetDiskUuid(string uuid)
    {
        lock (_lock)
        {
            _diskUuid = uuid;
        }
    }

    public void WaitingForKey()
    {
        lock (_lock)
        {
            _phase = BootPhases.WaitingForKey;
            _waitingSince = time.GetUtcNow();
        }
    }

    public void RejoinAttemptFailed(string error)
    {
        lock (_lock)
        {
            _rejoinAttempts++;
            _lastError = error;
        }
    }

    public void Error(string error)
    {
        lock (_lock)
        {
            _lastError = error;
        }
    }

    public void Booted()
    {
        lock (_lock)
        {
            _phase = BootPhases.Booted;
            _waitingSince = null;
            _bootedAt = time.GetUtcNow();
            _lastError = "";
        }
    }

    public string Phase
    {
        get
        {
            lock (_lock)
            {
                return _phase;
            }
        }
    }

    public BootStatus Snapshot()
    {
        lock (_lock)
        {
            return new BootStatus
            {
                Phase = _phase,
                WaitingSinceUnixMs = _waitingSince?.ToUnixTimeMilliseconds() ?? 0,
                RejoinAttempts = _rejoinAttempts,
                LastError = _lastError,
                DiskUuid = _diskUuid,
                Role = options.Role.Name(),
                NodeName = options.Name,
                Variant = options.Variant,
                BootedAtUnixMs = _bootedAt?.ToUnixTimeMilliseconds() ?? 0,
            };
        }
    }
}
