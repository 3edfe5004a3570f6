using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Attestation.Identities;
using Asterism.ControlPlane;
using Asterism.Crypto;
using Asterism.Protocol;
using Asterism.Protocol.Join;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace Asterism.JoinService;

/// <summary>
/// join.API: hands a node that proved by aTLS that it runs the expected software (with PCR 15 still zero) the keys
/// for its own disk, derived from the master secret on this node's own state disk. The aTLS layer has already refused
/// every unattested peer before a call reaches here. Who the caller is comes from its certified identity, never from
/// the request: a disk key goes only to the identity that owns the disk UUID, control-plane material only to a
/// certified control plane. Refusals are PermissionDenied with a generic text; the log names both sides.
/// </summary>
/// <para>With a <see cref="KeyReleaseGate"/> (every control plane with an etcd member), no key leaves before the node
/// registry allowed it and the release is in the audit log; without a quorum the call is Unavailable "control plane
/// has no quorum" and the node retries.</para>
public sealed class JoinApiService(ClusterSecrets secrets, ILoggerFactory loggers, IKeyReleaseGate? gate = null) : API.APIBase
{
    private readonly ILogger _log = loggers.CreateLogger(JoinServiceLog.Category);

    public override async Task<IssueRejoinTicketResponse> IssueRejoinTicket(IssueRejoinTicketRequest request, ServerCallContext context)
    {
        var (identity, facts) = PeerOf(context, "IssueRejoinTicket");
        JoinServiceLog.RejoinTicketCalled(_log, context.Peer, facts.Variant.Name, facts.AttestationKeyFingerprint, identity.Name, identity.Role);
        CheckUuid(request.DiskUuid, "IssueRejoinTicket");
        CheckOwner(identity, request.DiskUuid, "IssueRejoinTicket", context);
        // Which generations leave is the gate's decision (audited with it); without a gate, the current one.
        using var release = gate is not null
            ? await GatedAsync("IssueRejoinTicket", identity, () => gate.ReleaseRejoinAsync(identity, request.DiskUuid, secrets, context.CancellationToken))
            : CurrentRelease();
        var response = new IssueRejoinTicketResponse
        {
            StateDiskKey = SecretFields.Wrap(ZeroAfterResponse(context, KeyDerivation.DeriveDiskKey(release.Secret, request.DiskUuid, release.Generation))),
            MeasurementSecret = SecretFields.Wrap(ZeroAfterResponse(context, KeyDerivation.DeriveMeasurementSecret(release.Secret))),
            KeyGeneration = (uint)release.Generation,
        };
        if (release.NextSecret is { } next)
        {
            response.NextKeyGeneration = (uint)release.NextGeneration;
            response.NextStateDiskKey = SecretFields.Wrap(ZeroAfterResponse(context, KeyDerivation.DeriveDiskKey(next, request.DiskUuid, release.NextGeneration)));
            response.NextMeasurementSecret = SecretFields.Wrap(ZeroAfterResponse(context, KeyDerivation.DeriveMeasurementSecret(next)));
        }
        JoinServiceLog.RejoinTicketIssued(_log, request.DiskUuid);
        return response;
    }

    /// <summary>No gate (no etcd, the benchmark's baseline aside): the current generation, read atomically.</summary>
    private RejoinRelease CurrentRelease()
    {
        var (generation, secret) = secrets.CurrentCopy();
        return new RejoinRelease(generation, secret);
    }

    public override async Task<IssueJoinTicketResponse> IssueJoinTicket(IssueJoinTicketRequest request, ServerCallContext context)
    {
        var (identity, facts) = PeerOf(context, "IssueJoinTicket");
        JoinServiceLog.JoinTicketCalled(_log, context.Peer, request.NodeName, request.IsControlPlane,
            facts.Variant.Name, facts.AttestationKeyFingerprint, identity.Name, identity.Role);
        CheckUuid(request.DiskUuid, "IssueJoinTicket");
        CheckOwner(identity, request.DiskUuid, "IssueJoinTicket", context);
        if (request.IsControlPlane != identity.IsControlPlane || (request.NodeName.Length > 0 && request.NodeName != identity.Name))
        {
            JoinServiceLog.RefusedOtherRoleOrName(_log, "IssueJoinTicket", context.Peer, identity.Name, identity.Role,
                request.NodeName, request.IsControlPlane);
            throw new RpcException(new Status(StatusCode.PermissionDenied, "request does not match the caller's certified identity"));
        }
        JoinRelease release;
        if (gate is not null)
        {
            release = await GatedAsync("IssueJoinTicket", identity, () => gate.ReleaseJoinAsync(identity, request.DiskUuid, secrets, context.CancellationToken));
        }
        else
        {
            var (generation, secret) = secrets.CurrentCopy();
            release = new JoinRelease(generation, secret);
        }
        var controlPlane = release.ControlPlane;
        // The gate holds its one-control-plane-join lock and a learner for this ticket until JoinTicketSent; anything
        // thrown before the response owns them must release both, or no control plane could ever join again.
        var handedOver = controlPlane is null;
        try
        {
            // The disk key and key check of the record's generation; the measurement secret is always generation 1's,
            // which derives the cluster ID that never changes (src/Asterism.Node/README.md, "Decision").
            var response = new IssueJoinTicketResponse
            {
                StateDiskKey = SecretFields.Wrap(ZeroAfterResponse(context, KeyDerivation.DeriveDiskKey(release.Secret, request.DiskUuid, release.Generation))),
                MeasurementSalt = ByteString.CopyFrom(secrets.MeasurementSalt),
                MeasurementSecret = SecretFields.Wrap(ZeroAfterResponse(context, secrets.ClusterMeasurementSecret.ToArray())),
                KeyGeneration = (uint)release.Generation,
                KeyCheck = ByteString.CopyFrom(KeyDerivation.DeriveKeyCheck(release.Secret, secrets.MeasurementSalt)),
            };
            if (identity.IsControlPlane)
            {
                response.MasterKey = SecretFields.Wrap(ZeroAfterResponse(context, release.Secret.Key.ToArray()));
                response.MasterSalt = SecretFields.Wrap(ZeroAfterResponse(context, release.Secret.Salt.ToArray()));
                response.AttestationConfig = ByteString.CopyFrom(secrets.Policy.ToJson());
                if (controlPlane is not null)
                {
                    response.EtcdCaKey = SecretFields.Wrap(ZeroAfterResponse(context, controlPlane.CaKeyPem));
                    response.EtcdCaCertificate = ByteString.CopyFrom(controlPlane.CaCertificatePem);
                    response.EtcdInitialCluster.AddRange(controlPlane.InitialCluster);
                    // The learner is promoted once the response is out and the joiner's member caught up; removed if the
                    // response never left.
                    var http = context.GetHttpContext();
                    http.Response.OnCompleted(() =>
                    {
                        gate!.JoinTicketSent(!http.RequestAborted.IsCancellationRequested);
                        return Task.CompletedTask;
                    });
                    handedOver = true;
                }
            }
            JoinServiceLog.JoinTicketIssued(_log, request.DiskUuid, request.NodeName);
            return response;
        }
        finally
        {
            release.Dispose();
            if (!handedOver)
            {
                controlPlane!.Dispose();
                gate!.JoinTicketSent(false);
            }
        }
    }

    /// <summary>Runs a gate step; a lost quorum (or any other control-plane failure) becomes Unavailable, so the node retries.</summary>
    private async Task<T> GatedAsync<T>(string call, NodeIdentity identity, Func<Task<T>> step)
    {
        try
        {
            return await step();
        }
        catch (ControlPlaneException e)
        {
            JoinServiceLog.RefusedNoQuorum(_log, call, identity.Name, e.Message);
            throw new RpcException(new Status(StatusCode.Unavailable,
                e.Error == ControlPlaneError.NoQuorum ? ControlPlaneException.NoQuorumMessage : "control plane cannot release keys now"));
        }
    }

    private async Task GatedAsync(string call, NodeIdentity identity, Func<Task> step) =>
        await GatedAsync(call, identity, async () =>
        {
            await step();
            return true;
        });

    private void CheckUuid(string uuid, string call)
    {
        if (!KeyDerivation.IsCanonicalDiskUuid(uuid))
        {
            JoinServiceLog.RefusedInvalidDiskUuid(_log, call);
            throw new RpcException(new Status(StatusCode.InvalidArgument, "disk_uuid must be a lowercase 36-character UUID"));
        }
    }

    /// <summary>
    /// Key bytes go into the response without a copy and are zeroed once the response has been written (the unary
    /// response is serialised after this method returns, so zeroing here would send zeros).
    /// </summary>
    private static byte[] ZeroAfterResponse(ServerCallContext context, byte[] secret)
    {
        var http = context.GetHttpContext();
        http.Response.OnCompleted(() =>
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(secret);
            return Task.CompletedTask;
        });
        return secret;
    }

    private static byte[] ZeroAfterResponse(ServerCallContext context, SecretBytes secret)
    {
        // SecretBytes owns its array; take a copy we own for the wrap and zero the original now.
        using (secret)
        {
            return ZeroAfterResponse(context, secret.ToArray());
        }
    }

    /// <summary>A disk key only for the identity that owns the disk: its UUID is derived from the certified identity.</summary>
    private void CheckOwner(NodeIdentity identity, string diskUuid, string call, ServerCallContext context)
    {
        if (!string.Equals(identity.DiskUuid, diskUuid, StringComparison.Ordinal))
        {
            JoinServiceLog.RefusedOtherNodesDisk(_log, call, context.Peer, identity.Name, identity.Role, identity.DiskUuid, diskUuid);
            throw new RpcException(new Status(StatusCode.PermissionDenied, "the disk does not belong to the caller"));
        }
    }

    /// <summary>
    /// The attested peer and its certified identity; defence in depth: should this service ever be mapped on a
    /// listener without client-attesting aTLS, or the policy trust a key without a certificate, no key leaves it.
    /// </summary>
    private (NodeIdentity Identity, AttestationFacts Facts) PeerOf(ServerCallContext context, string call)
    {
        var facts = context.GetAtlsPeer()?.Facts;
        if (facts is null)
        {
            JoinServiceLog.RefusedWithoutAttestation(_log, call, context.Peer);
            throw new RpcException(new Status(StatusCode.Unauthenticated, "attestation required"));
        }
        if (facts.Identity is not { } identity)
        {
            JoinServiceLog.RefusedWithoutIdentity(_log, call, context.Peer, facts.AttestationKeyFingerprint);
            throw new RpcException(new Status(StatusCode.PermissionDenied, "a certified node identity is required"));
        }
        return (identity, facts);
    }
}
