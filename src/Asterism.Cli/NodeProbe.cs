using Asterism.Protocol;
using Asterism.Protocol.NodeStatus;
using Grpc.Net.Client;

namespace Asterism.Cli;

/// <summary>Asks nodes for their boot status (status port, plain HTTP/2 on loopback, no secrets) and the cluster API (mutual TLS, admin credential) for health.</summary>
public static class NodeProbe
{
    public static async Task<BootStatus?> BootStatusAsync(string address, CancellationToken cancellationToken)
    {
        try
        {
            using var channel = GrpcChannel.ForAddress($"http://{address}:{Ports.Status}", new GrpcChannelOptions
            {
                HttpHandler = new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(1) },
                MaxReceiveMessageSize = 64 * 1024,
            });
            var client = new API.APIClient(channel);
            return await client.GetBootStatusAsync(new GetBootStatusRequest(), deadline: DateTime.UtcNow.AddSeconds(2), cancellationToken: cancellationToken);
        }
        catch (Grpc.Core.RpcException)
        {
            return null;
        }
    }

    /// <summary>
    /// Asks the cluster API for its health with the workspace's admin credential (mutual TLS); null when there is no
    /// credential, the API is unreachable, or it refuses the credential.
    /// </summary>
    public static async Task<Asterism.Protocol.ClusterApi.HealthResponse?> ClusterApiHealthAsync(string workspace, CancellationToken cancellationToken)
    {
        AdminCredential credential;
        try
        {
            credential = AdminCredential.Load(workspace);
        }
        catch (CliError)
        {
            return null;
        }
        using (credential)
        using (var client = new ClusterApiClient(credential, TimeSpan.FromSeconds(1)))
        {
            try
            {
                return await client.Api.HealthAsync(new Asterism.Protocol.ClusterApi.HealthRequest(), deadline: DateTime.UtcNow.AddSeconds(3), cancellationToken: cancellationToken);
            }
            catch (Grpc.Core.RpcException) when (!cancellationToken.IsCancellationRequested)
            {
                return null;
            }
        }
    }

    /// <summary>
    /// Waits until every given node reports <paramref name="phase"/>, reporting progress; false on timeout. When
    /// <paramref name="gaveUp"/> names a reason (a node stopped), throws it as the command's error line.
    /// </summary>
    public static async Task<bool> WaitForPhaseAsync(IReadOnlyList<(string Name, string Address)> nodes, string phase, TimeSpan timeout, Progress progress, CancellationToken cancellationToken,
        Func<CancellationToken, Task<string?>>? gaveUp = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        var last = -1;
        for (var round = 0; ; round++)
        {
            // Every 2 s: a node that exited will never reach the phase; say so now instead of at the deadline.
            if (gaveUp is not null && round % 10 == 9 && await gaveUp(cancellationToken) is { } reason)
            {
                throw new CliError(reason);
            }
            var statuses = await Task.WhenAll(nodes.Select(n => BootStatusAsync(n.Address, cancellationToken)));
            var done = statuses.Count(s => s?.Phase == phase);
            if (done != last)
            {
                progress.Report($"  {done}/{nodes.Count} nodes {phase}");
                last = done;
            }
            if (done == nodes.Count)
            {
                return true;
            }
            if (DateTime.UtcNow > deadline)
            {
                return false;
            }
            await Task.Delay(200, cancellationToken);
        }
    }
}
