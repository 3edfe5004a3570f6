using Asterism.Atls;
using Asterism.Crypto;
using Asterism.Logging;
using Asterism.Protocol.Join;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace Asterism.JoinService;

/// <summary>
/// join.API: hands a node that proved by aTLS that it runs the expected software (with PCR 15 still zero) the keys
/// for its disk, derived from the master secret on this node's own state disk. The aTLS layer has already refused
/// every unattested peer before a call reaches here; this class checks the request itself.
/// </summary>
public sealed class JoinApiService(ClusterSecrets secrets, ILoggerFactory loggers) : API.APIBase
{
    private readonly ILogger _log = loggers.CreateLogger("joinService");

    public override Task<IssueRejoinTicketResponse> IssueRejoinTicket(IssueRejoinTicketRequest request, ServerCallContext context)
    {
        var peer = PeerOf(context, "IssueRejoinTicket");
        _log.Info("IssueRejoinTicket called", [Field.Of("peerAddress", context.Peer), .. peer]);
        CheckUuid(request.DiskUuid, "IssueRejoinTicket");
        using var diskKey = KeyDerivation.DeriveDiskKey(secrets.MasterSecret, request.DiskUuid);
        using var measurementSecret = KeyDerivation.DeriveMeasurementSecret(secrets.MasterSecret);
        _log.Info("IssueRejoinTicket successful", [Field.Of("diskUuid", request.DiskUuid)]);
        return Task.FromResult(new IssueRejoinTicketResponse
        {
            StateDiskKey = ByteString.CopyFrom(diskKey.Span),
            MeasurementSecret = ByteString.CopyFrom(measurementSecret.Span),
        });
    }

    public override Task<IssueJoinTicketResponse> IssueJoinTicket(IssueJoinTicketRequest request, ServerCallContext context)
    {
        var peer = PeerOf(context, "IssueJoinTicket");
        _log.Info("IssueJoinTicket called", [Field.Of("peerAddress", context.Peer), Field.Of("nodeName", request.NodeName),
            Field.Of("controlPlane", request.IsControlPlane), .. peer]);
        CheckUuid(request.DiskUuid, "IssueJoinTicket");
        using var diskKey = KeyDerivation.DeriveDiskKey(secrets.MasterSecret, request.DiskUuid);
        using var measurementSecret = KeyDerivation.DeriveMeasurementSecret(secrets.MasterSecret);
        var response = new IssueJoinTicketResponse
        {
            StateDiskKey = ByteString.CopyFrom(diskKey.Span),
            MeasurementSalt = ByteString.CopyFrom(secrets.MeasurementSalt),
            MeasurementSecret = ByteString.CopyFrom(measurementSecret.Span),
        };
        if (request.IsControlPlane)
        {
            response.MasterKey = ByteString.CopyFrom(secrets.MasterSecret.Key);
            response.MasterSalt = ByteString.CopyFrom(secrets.MasterSecret.Salt);
            response.AttestationConfig = ByteString.CopyFrom(secrets.Policy.ToJson());
        }
        _log.Info("IssueJoinTicket successful", [Field.Of("diskUuid", request.DiskUuid), Field.Of("nodeName", request.NodeName)]);
        return Task.FromResult(response);
    }

    private void CheckUuid(string uuid, string call)
    {
        if (!KeyDerivation.IsCanonicalDiskUuid(uuid))
        {
            _log.Warn("Refused ticket request with invalid disk UUID", [Field.Of("call", call)]);
            throw new RpcException(new Status(StatusCode.InvalidArgument, "disk_uuid must be a lowercase 36-character UUID"));
        }
    }

    /// <summary>
    /// The attested peer; defence in depth: should this service ever be mapped on a listener without client-attesting
    /// aTLS, no key leaves it.
    /// </summary>
    private KeyValuePair<string, object?>[] PeerOf(ServerCallContext context, string call)
    {
        var facts = context.GetAtlsPeer()?.Facts;
        if (facts is null)
        {
            _log.Warn("Refused ticket request without attestation", [Field.Of("call", call), Field.Of("peerAddress", context.Peer)]);
            throw new RpcException(new Status(StatusCode.Unauthenticated, "attestation required"));
        }
        return [Field.Of("variant", facts.Variant.Name), Field.Of("attestationKey", facts.AttestationKeyFingerprint)];
    }
}
