using Asterism.Protocol;
using Asterism.Protocol.NodeStatus;
using Grpc.Net.Client;

namespace Asterism.Cli;

/// <summary>Asks nodes for their boot status (status port, plain HTTP/2 on loopback, no secrets) and the cluster API for health.</summary>
public static class NodeProbe
{
    private static readonly HttpClient Http = new(new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(1) }) { Timeout = TimeSpan.FromSeconds(2) };

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

    public static async Task<bool> ClusterApiHealthyAsync(string address, CancellationToken cancellationToken)
    {
        try
        {
            using var response = await Http.GetAsync($"http://{address}:{Ports.ClusterApi}/healthz", cancellationToken);
            return response.IsSuccessStatusCode;
        }
        // SocketException: SocketsHttpHandler lets ENOTCONN from reading the remote endpoint escape unwrapped when the
        // load balancer resets a connection right after accepting it (no healthy backend).
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or System.Net.Sockets.SocketException && !cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>Waits until every given node reports <paramref name="phase"/>, reporting progress; false on timeout.</summary>
    public static async Task<bool> WaitForPhaseAsync(IReadOnlyList<(string Name, string Address)> nodes, string phase, TimeSpan timeout, Progress progress, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + timeout;
        var last = -1;
        while (true)
        {
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
