using Asterism.ControlPlane;
using Asterism.Protocol.ClusterApi;
using Grpc.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using ClusterApiGrpc = Asterism.Protocol.ClusterApi.ClusterApi;
using ProtoAuditEntry = Asterism.Protocol.ClusterApi.AuditEntry;

namespace Asterism.Node.Services;

/// <summary>
/// The cluster API's operations for the admin: health, node list, revoke, remove and the audit log. TLS has already
/// required a client certificate of the cluster CA; each call additionally requires the admin role (the certificate's
/// subject names <see cref="ClusterApiTls.AdminOrganization"/>), so a node's own etcd client certificate, issued by the
/// same CA, gets PermissionDenied. Every change is written to the audit log before it is made.
/// </summary>
public sealed partial class ClusterApiService(ControlPlaneAccess access, string nodeName, ILoggerFactory loggers, TimeProvider? time = null) : ClusterApiGrpc.ClusterApiBase
{
    private static readonly TimeSpan QuorumProbeTimeout = TimeSpan.FromSeconds(1);
    private readonly ILogger _log = loggers.CreateLogger(NodeLog.ClusterApi.Category);
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <inheritdoc />
    public override async Task<HealthResponse> Health(HealthRequest request, ServerCallContext context)
    {
        RequireAdmin(context);
        var connection = access.Connection;
        if (connection is null)
        {
            return new HealthResponse { ServedBy = nodeName, Quorum = "etcd: not running on " + nodeName, HasQuorum = false };
        }
        var status = await new EtcdMembership(connection).QuorumStatusAsync(QuorumProbeTimeout, context.CancellationToken);
        return new HealthResponse { ServedBy = nodeName, Quorum = status.Message, HasQuorum = status.HasQuorum };
    }

    /// <inheritdoc />
    public override Task<ListNodesResponse> ListNodes(ListNodesRequest request, ServerCallContext context) =>
        RunAsync(context, async connection =>
        {
            var response = new ListNodesResponse();
            foreach (var n in await new NodeRegistry(connection).ListAsync(context.CancellationToken))
            {
                response.Nodes.Add(new NodeInfo
                {
                    Name = n.Name,
                    Role = n.Role.ToString(),
                    DiskUuid = n.DiskUuid.ToString(),
                    JoinedAtUnixMs = n.JoinedAt.ToUnixTimeMilliseconds(),
                    KeyGeneration = n.KeyGeneration,
                    Revoked = n.Revoked,
                    RevokedAtUnixMs = n.RevokedAt?.ToUnixTimeMilliseconds() ?? 0,
                });
            }
            return response;
        });

    /// <inheritdoc />
    public override Task<RevokeNodeResponse> RevokeNode(RevokeNodeRequest request, ServerCallContext context) =>
        RunAsync(context, async connection =>
        {
            var admin = RequireAdmin(context);
            var name = RequireName(request.Name);
            var registry = new NodeRegistry(connection);
            var record = await registry.GetAsync(name, context.CancellationToken)
                ?? throw new RpcException(new Status(StatusCode.NotFound, $"node {name} is not registered"));
            if (record.Revoked)
            {
                return new RevokeNodeResponse { Changed = false };
            }
            // Recorded before it takes effect: a revocation that is not in the log does not happen.
            await new AuditLog(connection, _time).AppendAsync(AuditKind.Revocation, name, $"revoked by {admin} via the cluster API on {nodeName}", context.CancellationToken);
            await registry.RevokeAsync(name, _time.GetUtcNow(), context.CancellationToken);
            NodeLog.ClusterApi.Revoked(_log, name, admin);
            return new RevokeNodeResponse { Changed = true };
        });

    /// <inheritdoc />
    public override Task<RemoveNodeResponse> RemoveNode(RemoveNodeRequest request, ServerCallContext context) =>
        RunAsync(context, async connection =>
        {
            var admin = RequireAdmin(context);
            var name = RequireName(request.Name);
            var registry = new NodeRegistry(connection);
            var membership = new EtcdMembership(connection);
            var read = await registry.GetVersionedAsync(name, context.CancellationToken);
            var record = read?.Record;
            var members = await membership.ListAsync(context.CancellationToken);
            var isMember = members.Any(m => m.Name == name);
            if (record is null && !isMember)
            {
                throw new RpcException(new Status(StatusCode.NotFound, $"node {name} is not registered"));
            }
            if (isMember && members.Count == 1)
            {
                throw new RpcException(new Status(StatusCode.FailedPrecondition, $"{name} is the last etcd member; removing it would destroy the cluster"));
            }
            // A revoked node's record is its deny entry: deleting it would let the same certified identity join afresh
            // (the gate registers unknown names) and receive the same derived disk key. Only its etcd membership goes.
            var keepRecord = record is { Revoked: true };
            if (keepRecord && !isMember)
            {
                throw new RpcException(new Status(StatusCode.FailedPrecondition, $"{name} is revoked; its registry entry stays so that it can never join again"));
            }
            await new AuditLog(connection, _time).AppendAsync(AuditKind.MembershipChange, name,
                $"removed by {admin} via the cluster API on {nodeName}" + (isMember ? (keepRecord ? " (etcd member; revoked registry entry kept)" : " (etcd member and registry entry)") : " (registry entry)"), context.CancellationToken);
            // The registry entry first, the etcd membership last: when this control plane removes its own member, its
            // etcd stops right after, and nothing may still need it (CI: "no quorum" on the registry delete that came
            // second). A failed membership removal leaves the member; running the command again removes it.
            if (read is not null && !keepRecord)
            {
                if (BeforeRegistryRemove is { } hook)
                {
                    await hook(name, context.CancellationToken);
                }
                // Only the record the decision was made on: a `node revoke` that landed since the read made it the
                // node's deny entry, which must stay (Conflict -> Aborted; the admin runs the command again and is refused).
                try
                {
                    await registry.RemoveIfUnchangedAsync(read, context.CancellationToken);
                }
                catch (ControlPlaneException e) when (e.Error == ControlPlaneError.Conflict)
                {
                    // The entry above announced a removal that did not happen: say so in the chain too.
                    await new AuditLog(connection, _time).AppendAsync(AuditKind.MembershipChange, name, $"removal by {admin} abandoned: {e.Message}", context.CancellationToken);
                    throw;
                }
            }
            if (isMember)
            {
                await membership.RemoveAsync(name, context.CancellationToken);
            }
            NodeLog.ClusterApi.Removed(_log, name, admin, isMember);
            return new RemoveNodeResponse { WasMember = isMember };
        });

    /// <inheritdoc />
    public override async Task Audit(AuditRequest request, IServerStreamWriter<AuditMessage> responseStream, ServerCallContext context)
    {
        RequireAdmin(context);
        var connection = access.Connection ?? throw NoQuorum();
        try
        {
            var log = new AuditLog(connection);
            try
            {
                await foreach (var e in log.ReadAsync(1, context.CancellationToken))
                {
                    if (e.Time.ToUnixTimeMilliseconds() < request.SinceUnixMs)
                    {
                        continue;
                    }
                    await responseStream.WriteAsync(new AuditMessage
                    {
                        Entry = new ProtoAuditEntry
                        {
                            Sequence = e.Sequence,
                            TimeUnixMs = e.Time.ToUnixTimeMilliseconds(),
                            Kind = e.Kind.ToString(),
                            Node = e.Node,
                            Detail = e.Detail,
                            Previous = e.Previous,
                            Hash = e.Hash,
                        },
                    }, context.CancellationToken);
                }
            }
            catch (ControlPlaneException e) when (e.Error == ControlPlaneError.Corrupt)
            {
                // An entry that no longer parses ends the listing; the verification below names it.
            }
            var verification = await log.VerifyAsync(context.CancellationToken);
            await responseStream.WriteAsync(new AuditMessage
            {
                Verification = new Asterism.Protocol.ClusterApi.AuditVerification
                {
                    Entries = verification.Entries,
                    Intact = verification.Intact,
                    BrokenAt = verification.BrokenAt ?? 0,
                    Reason = verification.Reason ?? "",
                    Message = verification.Message,
                },
            }, context.CancellationToken);
        }
        catch (ControlPlaneException e)
        {
            throw ToRpc(e);
        }
    }

    private async Task<T> RunAsync<T>(ServerCallContext context, Func<EtcdConnection, Task<T>> operation)
    {
        RequireAdmin(context);
        var connection = access.Connection ?? throw NoQuorum();
        try
        {
            return await operation(connection);
        }
        catch (ControlPlaneException e)
        {
            throw ToRpc(e);
        }
    }

    /// <summary>
    /// Test seam: runs after RemoveNode read the record and decided to delete it, right before the delete, so a test can
    /// land a concurrent <c>node revoke</c> exactly in that window.
    /// </summary>
    internal Func<string, CancellationToken, Task>? BeforeRegistryRemove { get; set; }

    /// <summary>The caller's admin name (its certificate's CN); PermissionDenied for any other certificate.</summary>
    private string RequireAdmin(ServerCallContext context)
    {
        var certificate = context.GetHttpContext().Connection.ClientCertificate;
        if (!ClusterApiTls.IsAdmin(certificate))
        {
            NodeLog.ClusterApi.RefusedCaller(_log, context.Peer, certificate?.Subject ?? "(none)");
            throw new RpcException(new Status(StatusCode.PermissionDenied, "the cluster API needs an admin certificate"));
        }
        return certificate!.GetNameInfo(System.Security.Cryptography.X509Certificates.X509NameType.SimpleName, false);
    }

    private static string RequireName(string name) =>
        NodeNames.IsValid(name) ? name : throw new RpcException(new Status(StatusCode.InvalidArgument, $"'{(name.Length <= 64 ? name : name[..64] + "...")}' is not a valid node name (1-63 of a-z, 0-9, '-')"));

    private static RpcException NoQuorum() => new(new Status(StatusCode.Unavailable, ControlPlaneException.NoQuorumMessage));

    /// <summary>Control-plane failures as gRPC statuses; their messages name nodes and files, never keys.</summary>
    internal static RpcException ToRpc(ControlPlaneException e) => e.Error switch
    {
        ControlPlaneError.NoQuorum => NoQuorum(),
        ControlPlaneError.NotFound => new(new Status(StatusCode.NotFound, e.Message)),
        ControlPlaneError.InvalidRequest => new(new Status(StatusCode.FailedPrecondition, e.Message)),
        ControlPlaneError.Conflict => new(new Status(StatusCode.Aborted, e.Message)),
        ControlPlaneError.Corrupt => new(new Status(StatusCode.DataLoss, e.Message)),
        _ => new(new Status(StatusCode.Internal, e.Message)),
    };
}
