using Asterism.Crypto;
using Asterism.Logging;
using Asterism.Node.Unlock;
using Asterism.Protocol;
using Asterism.Protocol.Recover;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Recovery;

/// <summary>
/// recoverproto.API on a waiting control-plane node: measurement secret → disk UUID → disk key, or a probe (the
/// CLI's dry run) answered with the disk UUID alone. The key is checked
/// against keyslot 0 (and the secret against the cluster ID) <b>before</b> the call is acknowledged; a wrong key is
/// answered with FAILED_PRECONDITION and the node keeps serving. Calls are serialised by <see cref="KeyRace"/>.
/// </summary>
/// <remarks>
/// The node's own warm-up probe (<see cref="RecoveryWarmup"/>, recognised by the token in its headers) is answered like
/// any probe but logged at debug level; every other call is logged as received when it arrives.
/// </remarks>
public sealed class RecoveryServer(KeyRace race, RecoveryIdentity identity, ILoggerFactory loggers, TimeProvider? time = null, RecoveryWarmup? warmup = null) : API.APIBase
{
    private readonly ILogger _log = loggers.CreateLogger(NodeLog.RecoveryServer.Category);
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    public override async Task Recover(IAsyncStreamReader<RecoverMessage> requestStream, IServerStreamWriter<RecoverResponse> responseStream, ServerCallContext context)
    {
        var peer = context.Peer;
        // The node's own warm-up is known from its headers, before any message: every other call is in the log the
        // moment it arrives (also one that then stays silent), and the warm-up never is, whatever becomes of it.
        var own = warmup is not null && warmup.IsOwn(context.RequestHeaders);
        if (!own)
        {
            NodeLog.RecoveryServer.ReceivedCall(_log, peer);
        }
        if (race.IsDecided)
        {
            throw new RpcException(KeyVerdict.AlreadyRecovered.ToStatus());
        }
        var hasFirst = await NextMessageAsync(requestStream, context.CancellationToken);
        if (own)
        {
            if (hasFirst && requestStream.Current.RequestCase == RecoverMessage.RequestOneofCase.Probe)
            {
                NodeLog.RecoveryServer.AnsweredOwnProbe(_log, peer);
                await responseStream.WriteAsync(Named(), context.CancellationToken);
                return;
            }
            // The warm-up only ever probes: anything else under its token is treated, and logged, as any call.
            NodeLog.RecoveryServer.ReceivedCall(_log, peer);
        }
        if (!hasFirst)
        {
            NodeLog.RecoveryServer.RefusedCall(_log, peer, "first message is not a measurement secret");
            throw new RpcException(new Status(StatusCode.InvalidArgument, "first message is not a measurement secret"));
        }
        if (requestStream.Current.RequestCase == RecoverMessage.RequestOneofCase.Probe)
        {
            // `recover --dry-run`: name the disk and end the call. Nothing is offered to the key race, so the node
            // keeps waiting; this tells no more than the answer to a first message of any 32 bytes does.
            NodeLog.RecoveryServer.AnsweredProbe(_log, peer);
            await responseStream.WriteAsync(Named(), context.CancellationToken);
            return;
        }
        if (requestStream.Current.RequestCase != RecoverMessage.RequestOneofCase.MeasurementSecret)
        {
            NodeLog.RecoveryServer.RefusedCall(_log, peer, "first message is not a measurement secret");
            throw new RpcException(new Status(StatusCode.InvalidArgument, "first message is not a measurement secret"));
        }
        if (requestStream.Current.MeasurementSecret.Length != KeyDerivation.KeyLength)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "measurement secret must be 32 bytes"));
        }
        var measurementSecret = SecretBytes.CopyOf(requestStream.Current.MeasurementSecret.Span);
        SecretFields.Zero(requestStream.Current.MeasurementSecret);
        try
        {
            await responseStream.WriteAsync(Named(), context.CancellationToken);
            if (!await NextMessageAsync(requestStream, context.CancellationToken) || requestStream.Current.RequestCase != RecoverMessage.RequestOneofCase.StateDiskKey)
            {
                NodeLog.RecoveryServer.RefusedCall(_log, peer, "second message is not a state disk key");
                throw new RpcException(new Status(StatusCode.InvalidArgument, "second message is not a state disk key"));
            }
            if (requestStream.Current.StateDiskKey.Length != KeyDerivation.KeyLength)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, "state disk key must be 32 bytes"));
            }
            var keys = new ReceivedKeys(SecretBytes.CopyOf(requestStream.Current.StateDiskKey.Span), measurementSecret, "recovery");
            SecretFields.Zero(requestStream.Current.StateDiskKey);
            measurementSecret = null;
            var verdict = await race.OfferAsync(keys, context.CancellationToken);
            switch (verdict)
            {
                case KeyVerdict.Accepted:
                    NodeLog.RecoveryServer.ReceivedKeys(_log, peer);
                    await AwaitHalfCloseAsync(requestStream, context.CancellationToken);
                    return;
                case KeyVerdict.AlreadyRecovered:
                    break;
                case KeyVerdict.StoreUnreadable:
                    NodeLog.RecoveryServer.UnreadableState(_log, peer, "the key opens the disk but the node state on it is unreadable");
                    break;
                case KeyVerdict.MeasurementSecretRejected:
                    NodeLog.RecoveryServer.RejectedKey(_log, peer, "measurement secret does not derive this node's cluster ID");
                    break;
                default:
                    NodeLog.RecoveryServer.RejectedKey(_log, peer, "key does not open keyslot 0");
                    break;
            }
            throw new RpcException(verdict.ToStatus());
        }
        finally
        {
            measurementSecret?.Dispose();
        }
    }

    /// <summary>The answer that names this node and the disk it waits to unlock.</summary>
    private RecoverResponse Named() => new() { DiskUuid = identity.DiskUuid, NodeName = identity.NodeName, Role = identity.Role };

    /// <summary>
    /// The next message, or DEADLINE_EXCEEDED when the caller stays silent for <see cref="MessageWait"/>: anyone may
    /// connect to the recovery port before attestation decides anything, and a call that sent a measurement secret and
    /// then went quiet would otherwise hold its connection and buffers for as long as the node waits.
    /// </summary>
    private async Task<bool> NextMessageAsync(IAsyncStreamReader<RecoverMessage> requestStream, CancellationToken cancellationToken)
    {
        using var limit = new Deadline(MessageWait, _time, cancellationToken);
        try
        {
            return await requestStream.MoveNext(limit.Token);
        }
        catch (OperationCanceledException) when (limit.Expired && !cancellationToken.IsCancellationRequested)
        {
            throw new RpcException(new Status(StatusCode.DeadlineExceeded, $"no message within {MessageWait.TotalSeconds:0} s"));
        }
    }

    /// <summary>
    /// How long the node waits for each message of a recover call. The CLI sends the key as soon as the node has named
    /// its disk (one HKDF), so this only ends calls whose sender stopped; it matches the CLI's default per-node push
    /// timeout.
    /// </summary>
    public static readonly TimeSpan MessageWait = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The CLI half-closes its side right after the key. Ending the call only then means the OK status cannot race the
    /// listener's shutdown (which starts as soon as the key is accepted): a client still sending its end of stream
    /// into a connection that has closed sees an error instead of the status. A client that never half-closes gets
    /// the status after <see cref="HalfCloseWait"/> anyway.
    /// </summary>
    private async Task AwaitHalfCloseAsync(IAsyncStreamReader<RecoverMessage> requestStream, CancellationToken cancellationToken)
    {
        using var limit = new Deadline(HalfCloseWait, _time, cancellationToken);
        try
        {
            while (await requestStream.MoveNext(limit.Token))
            {
                // Nothing may follow the key; anything that does is ignored.
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or InvalidOperationException or RpcException)
        {
            // Gone, silent or sending garbage: the key is accepted either way.
        }
    }

    /// <summary>Well inside the recovery listener's 2 s shutdown timeout (Listeners), which starts at the same moment.</summary>
    public static readonly TimeSpan HalfCloseWait = TimeSpan.FromSeconds(1);
}

/// <summary>What a recovering node tells the CLI about itself.</summary>
public sealed record RecoveryIdentity(string DiskUuid, string NodeName, string Role);
