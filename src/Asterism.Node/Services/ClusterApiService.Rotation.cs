using System.Security.Cryptography;
using Asterism.ControlPlane;
using Asterism.Crypto;
using Asterism.JoinService;
using Asterism.Protocol;
using Asterism.Protocol.ClusterApi;
using Grpc.Core;

namespace Asterism.Node.Services;

/// <summary>
/// Master-secret rotation through the cluster API (issue #16 item 4). The admin sends the new master secret over the
/// mutual-TLS admin channel; this control plane seals it under the current one (<see cref="RotationSeal"/>) and
/// stores only the sealed bytes in etcd (<see cref="KeyRotation"/>). The new secret is zeroed once sealed.
/// </summary>
public sealed partial class ClusterApiService
{
    /// <inheritdoc />
    public override Task<RotationStatus> BeginRotation(BeginRotationRequest request, ServerCallContext context) =>
        RunAsync(context, async connection =>
        {
            var admin = RequireAdmin(context);
            var secrets = access.Secrets ?? throw new RpcException(new Status(StatusCode.FailedPrecondition, "this node holds no cluster secrets"));
            MasterSecret next;
            try
            {
                next = MasterSecret.FromBytes(request.MasterKey.Span, request.MasterSalt.Span);
            }
            catch (MasterSecretException e)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, "the new master secret is invalid: " + e.Message));
            }
            finally
            {
                SecretFields.Zero(request.MasterKey, request.MasterSalt);
            }
            using (next)
            {
                var rotation = new KeyRotation(connection, _time);
                var current = await rotation.CurrentGenerationAsync(context.CancellationToken);
                // A copy of the cluster's current generation (this control plane may hold it as its next secret if it
                // has not promoted yet): a promotion meanwhile cannot zero it under the seal.
                using var sealer = secrets.ForGeneration(current)
                    ?? throw new RpcException(new Status(StatusCode.FailedPrecondition, $"this control plane does not hold the cluster's generation {current} secret yet; retry in a moment"));
                if (CryptographicOperations.FixedTimeEquals(next.Key, sealer.Key))
                {
                    throw new RpcException(new Status(StatusCode.InvalidArgument, "the new master secret equals the current one"));
                }
                var sealedSecret = RotationSeal.Seal(sealer, next, current);
                await rotation.BeginAsync(sealedSecret, admin, nodeName, context.CancellationToken, sealedUnder: current);
            }
            return await StatusAsync(connection, context.CancellationToken);
        });

    /// <inheritdoc />
    public override Task<RotationStatus> GetRotation(GetRotationRequest request, ServerCallContext context) =>
        RunAsync(context, connection => StatusAsync(connection, context.CancellationToken));

    /// <inheritdoc />
    public override Task<RotationStatus> CompleteRotation(CompleteRotationRequest request, ServerCallContext context) =>
        RunAsync(context, async connection =>
        {
            var admin = RequireAdmin(context);
            var voided = await new KeyRotation(connection, _time).CompleteAsync(admin, nodeName, context.CancellationToken);
            var status = await StatusAsync(connection, context.CancellationToken);
            status.VoidGeneration = voided;
            return status;
        });

    private async Task<RotationStatus> StatusAsync(EtcdConnection connection, CancellationToken cancellationToken)
    {
        var rotation = new KeyRotation(connection, _time);
        var status = new RotationStatus { CurrentGeneration = await rotation.CurrentGenerationAsync(cancellationToken) };
        if (await rotation.PendingAsync(cancellationToken) is { } pending)
        {
            status.PendingGeneration = pending.To;
            status.Behind.AddRange((await rotation.BehindAsync(pending.To, cancellationToken)).Select(n => n.Name));
        }
        return status;
    }
}
