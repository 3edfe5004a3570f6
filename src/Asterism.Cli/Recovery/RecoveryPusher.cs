using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Attestation.Identities;
using Asterism.Crypto;
using Asterism.Protocol;
using Asterism.Protocol.Recover;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace Asterism.Cli.Recovery;

/// <summary>How one push ended.</summary>
public enum PushOutcome
{
    /// <summary>The node verified the key against its disk and acknowledged it.</summary>
    Recovered,

    /// <summary>Nothing listens (or the load balancer has no healthy backend): the node is not waiting for a key.</summary>
    Unavailable,

    /// <summary>The node failed attestation; no secret was sent.</summary>
    AttestationFailed,

    /// <summary>The node refused the key (wrong master secret for this disk).</summary>
    KeyRejected,

    /// <summary>
    /// The node attested, but is not the certified instance expected here, or reported a disk that is not the one
    /// recorded for it (or one already pushed in this run): no key was sent.
    /// </summary>
    Refused,

    /// <summary>Any other failure.</summary>
    Failed,
}

public sealed record PushResult(string Endpoint, PushOutcome Outcome, string Detail, string? NodeName = null, string? Variant = null)
{
    /// <summary>Whether this failure is the "load balancer not ready" kind Constellation always retries.</summary>
    public bool LoadBalancerNotReady { get; init; }

    /// <summary>
    /// The one stderr line naming a node that was not (or, in a dry run, would not be) recovered:
    /// <c>Error: node NAME (ENDPOINT): WHAT: DETAIL</c>. A failed attestation reads the same in both; the other
    /// outcomes in the caller's words, so a real run and its rehearsal cannot drift apart in shape.
    /// </summary>
    public string FailureLine(string name, string keyRejected, string refused, string otherwise)
    {
        var what = Outcome switch
        {
            PushOutcome.AttestationFailed => "attestation failed",
            PushOutcome.KeyRejected => keyRejected,
            PushOutcome.Refused => refused,
            _ => otherwise,
        };
        return $"Error: node {name} ({Endpoint}): {what}: {Detail}";
    }
}

/// <summary>
/// The CLI side of recoverproto: dials a node over server-attesting aTLS and validates its attestation and certified
/// identity before anything is sent (a control plane; the instance dialed, when known; one the node record lists; one
/// the deny-list does not name), then sends the measurement secret, learns the disk UUID, and sends a key only when
/// that UUID is the one recorded for this identity, is not a revoked node's, and was not pushed before in this run.
/// A node the deny-list names is not even dialed when its name is known. The master secret never leaves this process.
/// </summary>
/// <remarks>
/// During a rotation pending in the workspace the pusher holds two secrets (<see cref="RecoverySecrets"/>): it offers
/// the new generation first and, when the node answers that the key does not open its disk (it keeps waiting), the old
/// one on a new call over the same attested connection (re-dialled and re-attested should it have closed). The node
/// must name the same disk in every call; the disk counts as pushed once.
/// </remarks>
public sealed class RecoveryPusher
{
    private readonly RecoverySecrets _secrets;
    private readonly IAttestationValidator _validator;
    private readonly NodeRecord _record;
    private readonly ILoggerFactory _loggers;
    private readonly TimeSpan _callTimeout;
    private readonly IRecoveryDenyList _denyList;

    /// <summary>A pusher for one secret of generation 1 (a cluster that never rotated).</summary>
    /// <param name="denyList">The revoked nodes (<see cref="RegistryCopy"/>); <see cref="NoDenyList"/> when none is given.</param>
    public RecoveryPusher(MasterSecret master, IAttestationValidator validator, NodeRecord record, ILoggerFactory loggers, TimeSpan callTimeout, IRecoveryDenyList? denyList = null)
        : this(RecoverySecrets.Single(master), validator, record, loggers, callTimeout, denyList)
    {
    }

    /// <summary>A pusher offering <paramref name="secrets"/> newest generation first (the caller disposes them).</summary>
    /// <param name="denyList">The revoked nodes (<see cref="RegistryCopy"/>); <see cref="NoDenyList"/> when none is given.</param>
    public RecoveryPusher(RecoverySecrets secrets, IAttestationValidator validator, NodeRecord record, ILoggerFactory loggers, TimeSpan callTimeout, IRecoveryDenyList? denyList = null)
    {
        ArgumentNullException.ThrowIfNull(loggers);
        _secrets = secrets ?? throw new ArgumentNullException(nameof(secrets));
        _validator = validator;
        _record = record;
        _loggers = loggers;
        _callTimeout = callTimeout;
        _denyList = denyList ?? NoDenyList.Instance;
        _log = loggers.CreateLogger("attestation");
    }

    /// <summary>The detail of a push that hit its time limit.</summary>
    public const string TimedOutDetail = "timed out";

    private readonly HashSet<string> _pushed = new(StringComparer.Ordinal);
    private readonly ILogger _log;

    /// <summary>Pushes to <paramref name="endpoint"/>; <paramref name="expectedName"/> is the instance dialed (null through a load balancer).</summary>
    public async Task<PushResult> PushAsync(string endpoint, CancellationToken cancellationToken) =>
        await PushAsync(endpoint, null, cancellationToken).ConfigureAwait(false);

    /// <inheritdoc cref="PushAsync(string, CancellationToken)"/>
    public async Task<PushResult> PushAsync(string endpoint, string? expectedName, CancellationToken cancellationToken)
    {
        if (DeniedBeforeDial(_denyList, _record, endpoint, expectedName) is { } denied)
        {
            return denied;
        }
        var expected = new ExpectedPeerValidator(_validator, facts => ExpectedIdentity(facts, expectedName), _log);
        using var connection = new RecoveryConnection(endpoint, expected, _callTimeout, _loggers);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        // One limit for the node, however many generations it is offered.
        timeout.CancelAfter(_callTimeout);
        var attempt = new Attempt();
        return await _secrets.OfferInTurnAsync(secret => OfferAsync(connection, endpoint, expectedName, secret, attempt, cancellationToken, timeout.Token)).ConfigureAwait(false);
    }

    /// <summary>What the calls to one node have established so far: the disk it named and its certified name.</summary>
    private sealed class Attempt
    {
        public string? DiskUuid { get; set; }

        public string? NodeName { get; set; }
    }

    /// <summary>One recover call offering one generation's measurement secret and disk key.</summary>
    private async Task<PushResult> OfferAsync(RecoveryConnection connection, string endpoint, string? expectedName, GenerationSecret secret, Attempt attempt, CancellationToken cancellationToken, CancellationToken timeoutToken)
    {
        var client = connection.Client;
        string? nodeName = attempt.NodeName;
        try
        {
            using var call = client.Recover(cancellationToken: timeoutToken);
            using (var measurementSecret = RecoverySecrets.MeasurementSecret(secret))
            {
                await WriteSecretAsync(call.RequestStream, measurementSecret, (m, b) => m.MeasurementSecret = b, timeoutToken);
            }
            if (!await call.ResponseStream.MoveNext(timeoutToken))
            {
                return new PushResult(endpoint, PushOutcome.Failed, "node ended the call without naming its disk", null, connection.Attested?.Facts.Variant.Name);
            }
            var identity = call.ResponseStream.Current;
            var certified = connection.Attested?.Facts.Identity;
            nodeName = certified?.Name ?? identity.NodeName;
            if (!KeyDerivation.IsCanonicalDiskUuid(identity.DiskUuid))
            {
                return new PushResult(endpoint, PushOutcome.Failed, "node reported an invalid disk UUID", nodeName, connection.Attested?.Facts.Variant.Name);
            }
            if (certified is null || _record.Find(certified.Name)?.DiskUuid != identity.DiskUuid)
            {
                return new PushResult(endpoint, PushOutcome.Refused,
                    $"reported disk {identity.DiskUuid} is not the one recorded for {nodeName}; no key sent", nodeName, connection.Attested?.Facts.Variant.Name);
            }
            if (_denyList.Denies(certified.Name, identity.DiskUuid) is { } revoked)
            {
                return new PushResult(endpoint, PushOutcome.Refused, revoked + ", no key sent", nodeName, connection.Attested?.Facts.Variant.Name);
            }
            if (attempt.DiskUuid is null)
            {
                lock (_pushed)
                {
                    if (!_pushed.Add(identity.DiskUuid))
                    {
                        return new PushResult(endpoint, PushOutcome.Refused,
                            $"disk {identity.DiskUuid} of {nodeName} was already pushed in this run; no key sent twice", nodeName, connection.Attested?.Facts.Variant.Name);
                    }
                }
                attempt.DiskUuid = identity.DiskUuid;
                attempt.NodeName = nodeName;
            }
            else if (attempt.DiskUuid != identity.DiskUuid || attempt.NodeName != nodeName)
            {
                // The same node on the same endpoint must name the same disk when offered the other generation.
                return new PushResult(endpoint, PushOutcome.Refused,
                    $"named disk {identity.DiskUuid} as {nodeName} after naming {attempt.DiskUuid} as {attempt.NodeName}; no other key sent", nodeName, connection.Attested?.Facts.Variant.Name);
            }
            try
            {
                using (var diskKey = RecoverySecrets.DiskKey(secret, identity.DiskUuid))
                {
                    await WriteSecretAsync(call.RequestStream, diskKey, (m, b) => m.StateDiskKey = b, timeoutToken);
                }
                await call.RequestStream.CompleteAsync();
            }
            catch (Exception e) when (e is RpcException or IOException or InvalidOperationException)
            {
                // A node that accepted the key waits for this half-close before it ends the call and closes its
                // listener. Should the close still overtake this side's write (a slow client, or a node that no longer
                // waits), the write fails although the key arrived: the call's status, read below, decides.
            }
            while (await call.ResponseStream.MoveNext(timeoutToken))
            {
                // The protocol sends nothing more; drain until the node ends the call.
            }
            return new PushResult(endpoint, PushOutcome.Recovered, "", nodeName, connection.Attested?.Facts.Variant.Name);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.FailedPrecondition)
        {
            return new PushResult(endpoint, PushOutcome.KeyRejected, ex.Status.Detail, nodeName, connection.Attested?.Facts.Variant.Name);
        }
        catch (Exception ex) when (AtlsRefusedException.FindIn(ex) is { } refused)
        {
            return new PushResult(endpoint, PushOutcome.AttestationFailed, refused.Message, nodeName ?? expectedName);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable || ServerWentAwayBeforeCall(ex))
        {
            var detail = RpcErrors.Describe(ex);
            // Constellation's "load balancer not ready": the TCP connection was accepted but the handshake timed out
            // (the LB has not yet found a backend). A reset or refusal means nobody is waiting.
            var lbNotReady = connection.Attested is null && detail.Contains("timed out", StringComparison.Ordinal);
            return new PushResult(endpoint, PushOutcome.Unavailable, detail, nodeName) { LoadBalancerNotReady = lbNotReady };
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.DeadlineExceeded || (ex.StatusCode == StatusCode.Cancelled && !cancellationToken.IsCancellationRequested))
        {
            return new PushResult(endpoint, PushOutcome.Failed, TimedOutDetail, nodeName, connection.Attested?.Facts.Variant.Name);
        }
        catch (RpcException ex)
        {
            return new PushResult(endpoint, PushOutcome.Failed, RpcErrors.Describe(ex), nodeName, connection.Attested?.Facts.Variant.Name);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return new PushResult(endpoint, PushOutcome.Failed, TimedOutDetail, nodeName, connection.Attested?.Facts.Variant.Name);
        }
    }

    /// <summary>
    /// A node whose recovery server is shutting down (it just got its key) may still complete a handshake routed to it
    /// by the load balancer, then answer the call with HTTP/2 GOAWAY NO_ERROR before any stream started: nothing was
    /// processed, so this is "unavailable", not a failure (gRPC reports it as Internal).
    /// </summary>
    internal static bool ServerWentAwayBeforeCall(RpcException ex) =>
        ex.StatusCode == StatusCode.Internal
        && ex.Status.DebugException is HttpRequestException { InnerException: HttpProtocolException { ErrorCode: 0 } };

    /// <summary>Sends one secret field with no copy left behind: the wrapped buffer is zeroed once the message is serialised.</summary>
    private static async Task WriteSecretAsync(IClientStreamWriter<RecoverMessage> stream, SecretBytes secret, Action<RecoverMessage, ByteString> set, CancellationToken cancellationToken)
    {
        var bytes = secret.ToArray();
        try
        {
            var message = new RecoverMessage();
            set(message, SecretFields.Wrap(bytes));
            await stream.WriteAsync(message, cancellationToken);
        }
        finally
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(bytes);
        }
    }

    /// <summary>What recover requires of the attested peer: a certified control plane the record lists, and the instance dialed.</summary>
    private string? ExpectedIdentity(AttestationFacts facts, string? expectedName) => ExpectedIdentity(_record, _denyList, facts, expectedName);

    /// <summary>
    /// The same requirement for any caller holding the record (the dry run asks exactly what a real run asks). A revoked
    /// identity fails here, in the handshake, before the measurement secret is written: through a load balancer
    /// (<c>--endpoint</c>) its name is only known now.
    /// </summary>
    internal static string? ExpectedIdentity(NodeRecord record, IRecoveryDenyList denyList, AttestationFacts facts, string? expectedName)
    {
        var problem = ExpectedPeerValidator.Identity(expectedName, NodeIdentity.ControlPlaneRole)(facts);
        if (problem is not null)
        {
            return problem;
        }
        var recorded = record.Find(facts.Identity!.Name);
        if (recorded is null || recorded.Role != NodeIdentity.ControlPlaneRole)
        {
            return $"the peer {facts.Identity.Name} is not a control plane of this cluster's node record";
        }
        return denyList.Denies(recorded.Name, recorded.DiskUuid) is { } revoked ? $"the peer {revoked}, no key sent" : null;
    }

    /// <summary>
    /// A node the deny-list names is refused before it is dialed (parallel mode and the dry run know the instance's
    /// name): one line naming it as revoked, and nothing — not even the measurement secret — goes to it.
    /// </summary>
    internal static PushResult? DeniedBeforeDial(IRecoveryDenyList denyList, NodeRecord? record, string endpoint, string? expectedName)
    {
        if (expectedName is null)
        {
            return null;
        }
        return denyList.Denies(expectedName, record?.Find(expectedName)?.DiskUuid ?? "") is { } revoked
            ? new PushResult(endpoint, PushOutcome.Refused, revoked + ", not contacted", expectedName)
            : null;
    }

    /// <summary>The recovery endpoint of a node address.</summary>
    public static string RecoveryEndpoint(string address) => $"{address}:{Ports.Recovery}";
}
