using Asterism.Node.Tickets;
using Asterism.Protocol;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Rotation;

/// <summary>
/// Every booted node, every rejoin interval: a control plane first promotes a held next secret once the rotation
/// completed; then the node asks the control planes' rotation listeners in turn (<see cref="MetadataRotationEndpoints"/>)
/// until one answers, and carries out an offer (<see cref="KeyRotationStep"/>). The endpoint lookup and every call are
/// bounded by the per-call timeout; failures are logged and retried in the next round, on the node's clock.
/// </summary>
public sealed class RotationLoop(
    KeyRotationStep step,
    IJoinEndpointSource endpoints,
    IRotationClient client,
    Func<CancellationToken, Task<int>>? clusterGeneration,
    TimeSpan interval,
    TimeSpan timeout,
    ILoggerFactory loggers,
    TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly ILogger _log = loggers.CreateLogger(NodeLog.KeyRotation.Category);

    /// <summary>
    /// Rounds until <paramref name="cancellationToken"/> fires; never throws on cancellation. At boot a control plane
    /// promotes at once; the first ask waits a random part of the interval, so nodes that boot together (every worker
    /// after a recovery) do not all open an attested connection to the control planes in the same second, while those
    /// are still busy releasing keys.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            await PromoteAsync(cancellationToken);
            await Task.Delay(FirstAskDelay(interval, Random.Shared.NextDouble()), _time, cancellationToken);
            while (!cancellationToken.IsCancellationRequested)
            {
                await RoundAsync(cancellationToken);
                await Task.Delay(interval, _time, cancellationToken);
            }
        }
        catch (Exception) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>The wait before the first ask: <paramref name="fraction"/> (0 ≤ f &lt; 1) of the interval.</summary>
    public static TimeSpan FirstAskDelay(TimeSpan interval, double fraction) =>
        fraction is >= 0 and < 1 ? interval * fraction : throw new ArgumentOutOfRangeException(nameof(fraction));

    /// <summary>One round: promotion (control planes), then one successful ask. Returns the confirmed generation or 0.</summary>
    public async Task<int> RoundAsync(CancellationToken cancellationToken)
    {
        await PromoteAsync(cancellationToken);
        IReadOnlyList<string> list;
        try
        {
            using var lookup = new Deadline(timeout, _time, cancellationToken);
            list = await endpoints.GetEndpointsAsync(lookup.Token);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            NodeLog.KeyRotation.AttemptFailed(_log, "metadata", RpcErrors.Describe(e));
            return 0;
        }
        foreach (var endpoint in list)
        {
            try
            {
                return await step.RunAsync(endpoint, request => CallAsync(endpoint, request, cancellationToken), cancellationToken);
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                NodeLog.KeyRotation.AttemptFailed(_log, endpoint, RpcErrors.Describe(e));
            }
        }
        return 0;
    }

    private async Task<Protocol.Join.RotateKeyResponse> CallAsync(string endpoint, Protocol.Join.RotateKeyRequest request, CancellationToken cancellationToken)
    {
        using var attempt = new Deadline(timeout, _time, cancellationToken);
        return await client.RotateKeyAsync(endpoint, request, attempt.Token);
    }

    /// <summary>A control plane promotes its next secret once the cluster's generation reached it; failures are logged.</summary>
    private async Task PromoteAsync(CancellationToken cancellationToken)
    {
        if (clusterGeneration is null)
        {
            return;
        }
        try
        {
            using var deadline = new Deadline(timeout, _time, cancellationToken);
            await step.PromoteIfCompletedAsync(clusterGeneration, deadline.Token);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            NodeLog.KeyRotation.AttemptFailed(_log, "etcd", "promotion: " + RpcErrors.Describe(e));
        }
    }
}
