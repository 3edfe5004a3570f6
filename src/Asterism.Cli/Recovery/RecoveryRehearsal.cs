using System.Security.Cryptography;
using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Attestation.Identities;
using Asterism.Cloud;
using Asterism.Config;
using Asterism.Crypto;
using Asterism.Protocol;
using Asterism.Protocol.Recover;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace Asterism.Cli.Recovery;

/// <summary>
/// Nodes whose keys must not be released any more: the revoked nodes of the workspace's registry copy
/// (<see cref="RegistryCopy"/>). The real run (<see cref="RecoveryPusher"/>) and the rehearsal ask the same list at the
/// same points (before dialing a named instance, in the handshake, once the disk is named), so the rehearsal predicts it.
/// </summary>
public interface IRecoveryDenyList
{
    /// <summary>Why <paramref name="nodeName"/> with <paramref name="diskUuid"/> must not get its key, or null when it may.</summary>
    string? Denies(string nodeName, string diskUuid);
}

/// <summary>The empty deny-list (no registry copy in the workspace, or <c>--ignore-registry-copy</c>).</summary>
public sealed class NoDenyList : IRecoveryDenyList
{
    public static readonly NoDenyList Instance = new();

    public string? Denies(string nodeName, string diskUuid) => null;
}

/// <summary>
/// <c>asterism recover --dry-run</c>: walks the control planes exactly as a parallel recover does (the same
/// <see cref="ParallelRecovery"/>: stopped ones named, booting ones waited for, waiting ones dialed) and attests each
/// waiting node with the same aTLS validation and identity requirements as <see cref="RecoveryPusher"/>, but where a
/// real run sends the measurement secret it sends a <see cref="Probe"/>: the node names its disk and ends the call,
/// nothing secret leaves this process and the node keeps waiting. The master secret is checked here instead of by the
/// nodes: the node record's MAC (as the real run does before it dials anyone) and the cluster ID it derives (what each
/// node checks). Exit 0 only when a real run would push every waiting node and fail none.
/// </summary>
/// <remarks>
/// What a rehearsal cannot prove: that the key it would derive opens the disk's keyslot 0. Only the node can check
/// that, and only by receiving the key. The dry run proves the secret is this cluster's and the disk is the one
/// recorded for the node, which is what `init` enrolled; a keyslot changed behind the operator's back is found by
/// the real run (the node refuses the key and keeps waiting).
/// </remarks>
public sealed class RecoveryRehearsal
{
    /// <summary>The last stdout line of a rehearsal that found waiting nodes.</summary>
    public static string WouldRecoverLine(int n) => $"Dry run: a real run would recover {n} control-plane nodes. Nothing was sent.";

    /// <summary>The stdout line when no node waits.</summary>
    public const string NothingLine = "Dry run: no control-plane nodes in need of recovery found. Nothing was sent.";

    /// <summary>The stdout line naming what a real run would push to one node (never key bytes).</summary>
    public static string WouldPushLine(string name, string endpoint, string diskUuid) =>
        $"Would push to {name} ({endpoint}): the measurement secret and the disk key of disk {diskUuid} (HKDF of the master secret, \"{KeyDerivation.InfoPrefix}{diskUuid}\")";

    /// <summary>The stderr line naming a node a real run would not recover.</summary>
    public static string FailureLine(string name, PushResult result) =>
        result.FailureLine(name, keyRejected: "the node would refuse the key", refused: "a real run would refuse it and send no key", otherwise: "a real run would fail");

    private static readonly RecoveryLines DryRunLines = new()
    {
        Succeeded = (instance, probed) => WouldPushLine(instance.Name, probed.Endpoint, probed.Detail),
        SucceededProgress = probed => $"attested ({probed.Variant}), would be pushed its key",
        Failed = FailureLine,
        Summary = WouldRecoverLine,
        Nothing = NothingLine,
    };

    private readonly NodeRecord? _record;
    private readonly string? _secretProblem;
    private readonly IAttestationValidator _validator;
    private readonly IRecoveryDenyList _denyList;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _log;
    private readonly TimeSpan _callTimeout;
    private readonly HashSet<string> _seen = new(StringComparer.Ordinal);

    /// <param name="record">The authenticated node record, or null when the master secret did not verify it.</param>
    /// <param name="secretProblem">Why a real run would fail for every node (the master secret), or null.</param>
    public RecoveryRehearsal(NodeRecord? record, string? secretProblem, IAttestationValidator validator, IRecoveryDenyList denyList, ILoggerFactory loggers, TimeSpan callTimeout)
    {
        if (record is null && secretProblem is null)
        {
            throw new ArgumentException("without a node record there must be a reason", nameof(secretProblem));
        }
        _record = record;
        _secretProblem = secretProblem;
        _validator = validator;
        _denyList = denyList;
        _loggers = loggers;
        _log = loggers.CreateLogger("attestation");
        _callTimeout = callTimeout;
    }

    /// <summary>
    /// What a real run checks of the master secret before any key reaches a node: the node record's MAC (the real run
    /// stops there) and the cluster ID the secret derives (each node stops there). Null when both hold.
    /// </summary>
    public static string? CheckSecret(MasterSecret master, ClusterState state, string recordPath, out NodeRecord? record) =>
        CheckSecret(RecoverySecrets.Single(master), state, recordPath, out record, dispose: false);

    /// <summary>
    /// <see cref="CheckSecret(MasterSecret, ClusterState, string, out NodeRecord?)"/> for the secrets of a run that may
    /// offer two generations: the record must verify under one of them (or its next copy, written when the rotation
    /// began), and each secret must derive its generation's key check (generation 1: the cluster ID).
    /// </summary>
    public static string? CheckSecret(RecoverySecrets secrets, ClusterState state, string recordPath, out NodeRecord? record, bool dispose = false)
    {
        ArgumentNullException.ThrowIfNull(secrets);
        ArgumentNullException.ThrowIfNull(state);
        try
        {
            return CheckSecrets(secrets, state, recordPath, out record);
        }
        finally
        {
            if (dispose)
            {
                secrets.Dispose();
            }
        }
    }

    private static string? CheckSecrets(RecoverySecrets secrets, ClusterState state, string recordPath, out NodeRecord? record)
    {
        try
        {
            record = NodeRecord.LoadAny(recordPath, Path.Combine(Path.GetDirectoryName(recordPath)!, NodeRecord.NextFileName), [.. secrets.InOrder.Select(s => s.Master)]);
        }
        catch (CliError e)
        {
            record = null;
            return e.Message;
        }
        if (state.ClusterValues.ClusterId is not { } clusterIdHex || state.ClusterValues.MeasurementSalt is not { } saltHex)
        {
            return "the workspace state has no cluster ID: was the cluster initialized from this workspace?";
        }
        KeyGenerations generations;
        try
        {
            generations = Path.GetDirectoryName(recordPath) is { Length: > 0 } directory
                ? KeyGenerations.Load(directory, state)
                : KeyGenerations.ForGenerationOne(clusterIdHex, saltHex);
        }
        catch (CliError e)
        {
            return e.Message;
        }
        foreach (var secret in secrets.InOrder)
        {
            string expected;
            try
            {
                expected = generations.KeyCheckFor(secret.Generation, "the master secret is");
            }
            catch (CliError e)
            {
                return e.Message;
            }
            var derived = KeyDerivation.DeriveKeyCheck(secret.Master, Convert.FromHexString(saltHex));
            if (!CryptographicOperations.FixedTimeEquals(derived, Convert.FromHexString(expected)))
            {
                return secret.Generation == 1
                    ? "the master secret does not derive this cluster's ID (asterism-state.yaml): every node would refuse it"
                    : $"the master secret does not derive the key check of generation {secret.Generation} ({KeyGenerations.FileName}): every node would refuse it";
            }
        }
        return null;
    }

    /// <summary>The whole rehearsal: secret check, then every control plane as <see cref="ParallelRecovery"/> walks them.</summary>
    /// <param name="ignoreRegistryCopy">As a real run with <c>--ignore-registry-copy</c>: revocations are not checked.</param>
    public static async Task<int> RunAsync(Workspace workspace, RecoverySecrets secrets, IAttestationValidator validator, ILoggerFactory loggers,
        ParallelRecoveryOptions options, TextWriter stdout, TextWriter stderr, Progress progress, CancellationToken cancellationToken, bool ignoreRegistryCopy = false)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        ArgumentNullException.ThrowIfNull(secrets);
        var problem = CheckSecret(secrets, workspace.LoadState(), workspace.NodeRecordPath, out var record);
        IRecoveryDenyList denyList = NoDenyList.Instance;
        if (problem is not null)
        {
            // Said once here; each waiting node is named below with the short form. The registry copy is not checked:
            // it is MAC'd with the same secret and would fail for the same reason.
            await stderr.WriteLineAsync("Error: " + problem);
        }
        else
        {
            // A real run stops here, before any node is dialed, when the copy does not verify: so does the rehearsal.
            denyList = Commands.RecoverCommand.LoadDenyList(workspace, [.. secrets.InOrder.Select(s => s.Master)], ignoreRegistryCopy, stderr);
        }
        var rehearsal = new RecoveryRehearsal(record, problem, validator, denyList, loggers, options.PushTimeout);
        using var cloud = workspace.ConnectProvider();
        var instances = await cloud.ListAsync(cancellationToken);
        var walk = new ParallelRecovery(
            (instance, ct) => rehearsal.ProbeAsync(RecoveryPusher.RecoveryEndpoint(instance.Address), instance.Name, ct),
            async (address, ct) => (await NodeProbe.BootStatusAsync(address, ct))?.Phase,
            options with { Lines = DryRunLines });
        var exit = await walk.RunAsync(instances, stdout, stderr, progress, cancellationToken);
        // A real run with a bad secret fails even when no node waits (it stops at the node record).
        return problem is null ? exit : 1;
    }

    /// <summary>
    /// Attests the node at <paramref name="endpoint"/> as a real push would, asks it which disk it waits for, and
    /// decides whether a real run would push it. <see cref="PushOutcome.Recovered"/> means "would be pushed"; its
    /// detail is the disk UUID. Nothing secret is sent.
    /// </summary>
    public async Task<PushResult> ProbeAsync(string endpoint, string? expectedName, CancellationToken cancellationToken)
    {
        if (RecoveryPusher.DeniedBeforeDial(_denyList, _record, endpoint, expectedName) is { } denied)
        {
            return denied;
        }
        var expected = new ExpectedPeerValidator(_validator, facts => _record is null
            ? ExpectedPeerValidator.Identity(expectedName, NodeIdentity.ControlPlaneRole)(facts)
            : RecoveryPusher.ExpectedIdentity(_record, _denyList, facts, expectedName), _log);
        using var connection = new RecoveryConnection(endpoint, expected, _callTimeout, _loggers);
        var client = connection.Client;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_callTimeout);
        string? nodeName = null;
        try
        {
            using var call = client.Recover(cancellationToken: timeout.Token);
            await call.RequestStream.WriteAsync(new RecoverMessage { Probe = new Probe() }, timeout.Token);
            await call.RequestStream.CompleteAsync();
            if (!await call.ResponseStream.MoveNext(timeout.Token))
            {
                return new PushResult(endpoint, PushOutcome.Failed, "node ended the call without naming its disk", null, connection.Attested?.Facts.Variant.Name);
            }
            var identity = call.ResponseStream.Current;
            while (await call.ResponseStream.MoveNext(timeout.Token))
            {
                // The node ends the call after naming its disk.
            }
            var variant = connection.Attested?.Facts.Variant.Name;
            var certified = connection.Attested?.Facts.Identity;
            nodeName = certified?.Name ?? identity.NodeName;
            if (!KeyDerivation.IsCanonicalDiskUuid(identity.DiskUuid))
            {
                return new PushResult(endpoint, PushOutcome.Failed, "node reported an invalid disk UUID", nodeName, variant);
            }
            if (_secretProblem is not null || _record is null || certified is null)
            {
                return new PushResult(endpoint, PushOutcome.KeyRejected, "the master secret does not belong to this cluster; nothing sent", nodeName, variant);
            }
            if (_record.Find(certified.Name)?.DiskUuid != identity.DiskUuid)
            {
                return new PushResult(endpoint, PushOutcome.Refused, $"reported disk {identity.DiskUuid} is not the one recorded for {nodeName}", nodeName, variant);
            }
            if (_denyList.Denies(certified.Name, identity.DiskUuid) is { } revoked)
            {
                return new PushResult(endpoint, PushOutcome.Refused, revoked + ", no key sent", nodeName, variant);
            }
            lock (_seen)
            {
                if (!_seen.Add(identity.DiskUuid))
                {
                    return new PushResult(endpoint, PushOutcome.Refused, $"disk {identity.DiskUuid} of {nodeName} was already named by another node in this run", nodeName, variant);
                }
            }
            return new PushResult(endpoint, PushOutcome.Recovered, identity.DiskUuid, nodeName, variant);
        }
        catch (Exception ex) when (AtlsRefusedException.FindIn(ex) is { } refused)
        {
            return new PushResult(endpoint, PushOutcome.AttestationFailed, refused.Message, nodeName ?? expectedName);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.InvalidArgument && connection.Attested is not null)
        {
            // A node built before the probe existed reads it as a first message that is not a measurement secret.
            return new PushResult(endpoint, PushOutcome.Failed, $"the node does not answer the dry-run probe ({ex.Status.Detail}); is it an older build?", nodeName ?? expectedName, connection.Attested!.Facts.Variant.Name);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable || RecoveryPusher.ServerWentAwayBeforeCall(ex))
        {
            return new PushResult(endpoint, PushOutcome.Unavailable, RpcErrors.Describe(ex), nodeName);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.DeadlineExceeded || (ex.StatusCode == StatusCode.Cancelled && !cancellationToken.IsCancellationRequested))
        {
            return new PushResult(endpoint, PushOutcome.Failed, RecoveryPusher.TimedOutDetail, nodeName, connection.Attested?.Facts.Variant.Name);
        }
        catch (RpcException ex)
        {
            return new PushResult(endpoint, PushOutcome.Failed, RpcErrors.Describe(ex), nodeName, connection.Attested?.Facts.Variant.Name);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return new PushResult(endpoint, PushOutcome.Failed, RecoveryPusher.TimedOutDetail, nodeName, connection.Attested?.Facts.Variant.Name);
        }
    }
}
