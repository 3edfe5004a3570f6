using Asterism.Cloud;
using Asterism.Protocol;

namespace Asterism.Node.Tickets;

/// <summary>
/// JoinService endpoints from the cloud metadata: the load balancer first, then every control-plane instance's
/// address, this node's own removed (it cannot serve itself). A failed load-balancer lookup fails the round, as in
/// Constellation; the load balancer's health checks keep a rebooting node out of it.
/// </summary>
public sealed class MetadataJoinEndpoints(IMetadataClient metadata, string ownAddress) : IJoinEndpointSource
{
    public async Task<IReadOnlyList<string>> GetEndpointsAsync(CancellationToken cancellationToken)
    {
        var loadBalancer = await metadata.LoadBalancerEndpointAsync(cancellationToken);
        var instances = await metadata.ListAsync(cancellationToken);
        var endpoints = new List<string> { $"{loadBalancer}:{Ports.JoinService}" };
        endpoints.AddRange(instances
            .Where(i => i.Role == "control-plane" && !string.IsNullOrEmpty(i.Address) && i.Address != ownAddress)
            .Select(i => $"{i.Address}:{Ports.JoinService}"));
        return endpoints;
    }
}
