namespace Asterism.Cloud;

/// <summary>What a node asks its cloud: who am I, who else is there, where is the load balancer.</summary>
public interface IMetadataClient
{
    /// <summary>This instance's own entry; throws <see cref="MetadataException"/> if the provider does not know it.</summary>
    Task<InstanceInfo> SelfAsync(string name, CancellationToken cancellationToken);

    Task<IReadOnlyList<InstanceInfo>> ListAsync(CancellationToken cancellationToken);

    /// <summary>The load balancer's host (an address without port), e.g. "127.A.B.2".</summary>
    Task<string> LoadBalancerEndpointAsync(CancellationToken cancellationToken);
}

/// <summary>The metadata API failed, answered with an error, or answered something invalid.</summary>
public class MetadataException(string message, int? statusCode = null, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>HTTP status when the API answered with an error.</summary>
    public int? StatusCode { get; } = statusCode;
}
