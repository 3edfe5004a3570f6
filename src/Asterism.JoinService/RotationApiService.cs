using Asterism.Atls;
using Asterism.ControlPlane;
using Asterism.Protocol;
using Asterism.Protocol.Join;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace Asterism.JoinService;

/// <summary>
/// join.Rotation: a running node's rotation call (issue #16 item 4), judged by <see cref="RotationGate"/>. Who the
/// caller is comes from its attested, certified identity only. Must be mapped only on a listener whose aTLS policy is
/// <see cref="Attestation.AttestationPolicy.ForRunningNode"/>; the gate re-checks PCR 15 itself.
/// </summary>
public sealed class RotationApiService(RotationGate gate, ILoggerFactory loggers) : Rotation.RotationBase
{
    private readonly ILogger _log = loggers.CreateLogger(JoinServiceLog.Category);

    /// <inheritdoc />
    public override async Task<RotateKeyResponse> RotateKey(RotateKeyRequest request, ServerCallContext context)
    {
        var facts = context.GetAtlsPeer()?.Facts;
        if (facts is null)
        {
            JoinServiceLog.RefusedWithoutAttestation(_log, "RotateKey", context.Peer);
            throw new RpcException(new Status(StatusCode.Unauthenticated, "attestation required"));
        }
        if (facts.Identity is null)
        {
            JoinServiceLog.RefusedWithoutIdentity(_log, "RotateKey", context.Peer, facts.AttestationKeyFingerprint);
            throw new RpcException(new Status(StatusCode.PermissionDenied, "a certified node identity is required"));
        }
        if (request.ConfirmGeneration > int.MaxValue)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "confirm_generation is out of range"));
        }
        try
        {
            if (request.ConfirmGeneration > 0)
            {
                var confirmed = await gate.ConfirmAsync(facts, request.DiskUuid, (int)request.ConfirmGeneration, context.CancellationToken);
                return new RotateKeyResponse { Generation = (uint)confirmed };
            }
            using var offer = await gate.OfferAsync(facts, request.DiskUuid, context.CancellationToken);
            if (offer is null)
            {
                return new RotateKeyResponse();
            }
            var response = new RotateKeyResponse
            {
                Generation = (uint)offer.Generation,
                StateDiskKey = SecretFields.Wrap(ZeroAfterResponse(context, offer.DiskKey.ToArray())),
                KeyCheck = ByteString.CopyFrom(offer.KeyCheck),
            };
            if (offer.MasterSecret is { } master)
            {
                // The gate gives it only to a control plane by certified identity and registry record.
                response.MasterKey = SecretFields.Wrap(ZeroAfterResponse(context, master.Key.ToArray()));
                response.MasterSalt = SecretFields.Wrap(ZeroAfterResponse(context, master.Salt.ToArray()));
            }
            return response;
        }
        catch (ControlPlaneException e)
        {
            // Conflict (the record changed under the offer) and Corrupt (the sealed secret does not open) are Unavailable:
            // the node asks again on its next interval.
            JoinServiceLog.RefusedNoQuorum(_log, "RotateKey", facts.Identity.Name, e.Message);
            throw new RpcException(new Status(e.Error switch
            {
                ControlPlaneError.NoQuorum => StatusCode.Unavailable,
                ControlPlaneError.InvalidRequest => StatusCode.FailedPrecondition,
                _ => StatusCode.Unavailable,
            }, e.Error == ControlPlaneError.NoQuorum ? ControlPlaneException.NoQuorumMessage : "the rotation cannot proceed now: " + e.Message));
        }
    }

    /// <summary>Key bytes go into the response without a copy and are zeroed once it has been written.</summary>
    private static byte[] ZeroAfterResponse(ServerCallContext context, byte[] secret)
    {
        context.GetHttpContext().Response.OnCompleted(() =>
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(secret);
            return Task.CompletedTask;
        });
        return secret;
    }
}
