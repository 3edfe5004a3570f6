using Asterism.Protocol.Join;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Tickets;

/// <summary>
/// Sends one ticket request to one JoinService endpoint. The node's implementation is <see cref="AttestedTicketClient"/>
/// (a fresh mutual-aTLS connection per call); tests answer, refuse or hang without a network.
/// </summary>
public interface ITicketClient
{
    /// <summary>First boot: the keys (and for control planes the cluster secrets) of a joining node.</summary>
    Task<IssueJoinTicketResponse> IssueJoinTicketAsync(string endpoint, IssueJoinTicketRequest request, CancellationToken cancellationToken);

    /// <summary>Reboot: the disk key and measurement secret of a node that was a member before.</summary>
    Task<IssueRejoinTicketResponse> IssueRejoinTicketAsync(string endpoint, IssueRejoinTicketRequest request, CancellationToken cancellationToken);
}

/// <summary>
/// Ticket calls over <see cref="JoinServiceConnection"/>: this node attests, and the JoinService must pass
/// <see cref="JoinServiceTrust"/> before any request leaves. The caller's token bounds the whole call (connect,
/// handshake, request); <paramref name="handshakeTimeout"/> bounds the aTLS handshake and validation on their own.
/// </summary>
public sealed class AttestedTicketClient(NodeAttestation attestation, TimeSpan handshakeTimeout, ILoggerFactory loggers, TimeProvider? time = null) : ITicketClient
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <inheritdoc />
    public async Task<IssueJoinTicketResponse> IssueJoinTicketAsync(string endpoint, IssueJoinTicketRequest request, CancellationToken cancellationToken)
    {
        using var connection = await JoinServiceConnection.OpenAsync(endpoint, attestation, handshakeTimeout, loggers, _time, cancellationToken);
        return await connection.Client.IssueJoinTicketAsync(request, cancellationToken: cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IssueRejoinTicketResponse> IssueRejoinTicketAsync(string endpoint, IssueRejoinTicketRequest request, CancellationToken cancellationToken)
    {
        using var connection = await JoinServiceConnection.OpenAsync(endpoint, attestation, handshakeTimeout, loggers, _time, cancellationToken);
        return await connection.Client.IssueRejoinTicketAsync(request, cancellationToken: cancellationToken);
    }
}
