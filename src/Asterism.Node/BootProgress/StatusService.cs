using Asterism.Protocol.NodeStatus;
using Grpc.Core;

namespace Asterism.Node.BootProgress;

/// <summary>nodestatus.API: the read-only boot status.</summary>
public sealed class StatusService(BootStatusTracker tracker) : API.APIBase
{
    public override Task<BootStatus> GetBootStatus(GetBootStatusRequest request, ServerCallContext context) =>
        tracker.SnapshotWithEtcdAsync(context.CancellationToken);
}
