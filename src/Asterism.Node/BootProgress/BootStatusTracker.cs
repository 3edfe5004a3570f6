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
