namespace Asterism.Node.Tickets;

/// <summary>Where a node finds JoinService endpoints (host:port): the load balancer first, then every control-plane node but itself.</summary>
public interface IJoinEndpointSource
{
    Task<IReadOnlyList<string>> GetEndpointsAsync(CancellationToken cancellationToken);
}
