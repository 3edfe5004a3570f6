using Asterism.Cloud;
using Asterism.Node.Tickets;
using Asterism.Protocol;
using Asterism.Protocol.Join;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Rotation;

/// <summary>Sends one join.Rotation/RotateKey call to one control plane; tests answer without a network.</summary>
public interface IRotationClient
{
    Task<RotateKeyResponse> RotateKeyAsync(string endpoint, RotateKeyRequest request, CancellationToken cancellationToken);
}

/// <summary>
/// RotateKey over a fresh mutual-aTLS connection (<see cref="JoinServiceConnection"/>): this node attests with its
/// running PCR 15 (the listener's policy requires it), and the control plane must pass <see cref="JoinServiceTrust"/>
/// before the request leaves, exactly as for a rejoin.
/// </summary>
public sealed class AttestedRotationClient(NodeAttestation attestation, TimeSpan handshakeTimeout, ILoggerFactory loggers, TimeProvider? time = null) : IRotationClient
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <inheritdoc />
    public async Task<RotateKeyResponse> RotateKeyAsync(string endpoint, RotateKeyRequest request, CancellationToken cancellationToken)
    {
        using var connection = await JoinServiceConnection.OpenAsync(endpoint, attestation, handshakeTimeout, loggers, _time, cancellationToken);
        return await connection.RotationClient.RotateKeyAsync(request, cancellationToken: cancellationToken);
    }
}

/// <summary>
/// Every control plane's rotation listener (<see cref="Ports.Rotation"/>) from the cloud metadata, this node's own
/// included (a lone control plane rotates its own disk through itself); never the load balancer, which does not carry
/// this port.
/// </summary>
public sealed class MetadataRotationEndpoints(IMetadataClient metadata) : IJoinEndpointSource
{
    /// <inheritdoc />
    public async Task<IReadOnlyList<string>> GetEndpointsAsync(CancellationToken cancellationToken) =>
        [.. (await metadata.ListAsync(cancellationToken))
            .Where(i => i.Role == "control-plane" && !string.IsNullOrEmpty(i.Address))
            .Select(i => $"{i.Address}:{Ports.Rotation}")];
}
