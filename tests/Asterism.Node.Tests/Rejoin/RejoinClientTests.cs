using Asterism.Crypto;
using Asterism.Node.BootProgress;
using Asterism.Node.Rejoin;
using Asterism.Node.Tests.Fakes;
using Asterism.Node.Tickets;
using Asterism.Node.Unlock;
using Asterism.Protocol.Join;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Node.Tests.Rejoin;

/// <summary>
/// The reboot's rejoin rounds on a fake clock: what the process tests wait 20–30 s for (a retry after the interval, a
/// hung JoinService given up after the timeout, the recovery winning the race) happens here in milliseconds.
/// </summary>
public sealed class RejoinClientTests : IDisposable
{
    private const string LoadBalancer = "127.0.1.2:30090";
    private const string ControlPlane1 = "127.0.1.11:30090";
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(7);
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(3);

    private readonly TestDisk _disk = TestDisk.CreateInitialized();
    private readonly TestClock _clock = new();
    private readonly FakeTicketClient _tickets = new();
    private readonly KeyRace _race;
    private readonly BootStatusTracker _status;

    public RejoinClientTests()
    {
        _race = new KeyRace(_disk.Volume);
        _status = new BootStatusTracker(_disk.Options(Interval, Timeout), _clock);
    }

    public void Dispose() => _disk.Dispose();

    [Fact]
    public async Task RunAsync_LoadBalancerRefusesSecondEndpointHasTheKey_UnlocksAndStops()
    {
        _tickets.OnRejoin(LoadBalancer, (_, _) => FakeTicketClient.Refuse<IssueRejoinTicketResponse>(StatusCode.Unavailable, "no healthy backend"));
        _tickets.OnRejoin(ControlPlane1, (uuid, _) => Task.FromResult(Ticket(_disk.Master, uuid)));

        await Client(FakeEndpoints.Of(LoadBalancer, ControlPlane1)).RunAsync(CancellationToken.None).WaitAsync(TestLimits.Hang);

        Assert.Equal([LoadBalancer, ControlPlane1], _tickets.Calls);
        Assert.Equal("rejoin", (await _race.Winner).Keys.Source);
        var status = _status.Snapshot();
        Assert.Equal(1, status.RejoinAttempts);
        Assert.Equal($"{LoadBalancer}: Unavailable: no healthy backend", status.LastError);
    }

    [Fact]
    public async Task RunAsync_EveryEndpointFails_NextRoundExactlyAfterTheInterval()
    {
        var rounds = 0;
        _tickets.OnRejoin(ControlPlane1, (uuid, _) => ++rounds < 2
            ? FakeTicketClient.Refuse<IssueRejoinTicketResponse>(StatusCode.Unavailable, "connection refused")
            : Task.FromResult(Ticket(_disk.Master, uuid)));
        var endpoints = FakeEndpoints.Of(LoadBalancer, ControlPlane1);
        var run = Client(endpoints).RunAsync(CancellationToken.None);

        await _clock.WaitForTimerAsync(Interval);
        Assert.Equal(1, endpoints.Lookups);
        Assert.Equal(2, _tickets.Calls.Count);
        _clock.Advance(Interval - TimeSpan.FromMilliseconds(1));
        Assert.Equal(1, endpoints.Lookups);
        _clock.Advance(TimeSpan.FromMilliseconds(1));

        await run.WaitAsync(TestLimits.Hang);
        Assert.Equal(2, endpoints.Lookups);
        Assert.Equal([LoadBalancer, ControlPlane1, LoadBalancer, ControlPlane1], _tickets.Calls);
        Assert.True(_race.IsDecided);
        Assert.Equal(3, _status.Snapshot().RejoinAttempts);
    }

    [Fact]
    public async Task RunAsync_JoinServiceNeverAnswers_GivenUpAfterTheTimeout_NextEndpointAsked()
    {
        _tickets.OnRejoin(LoadBalancer, (_, ct) => FakeTicketClient.Hang<IssueRejoinTicketResponse>(ct));
        _tickets.OnRejoin(ControlPlane1, (uuid, _) => Task.FromResult(Ticket(_disk.Master, uuid)));
        var run = Client(FakeEndpoints.Of(LoadBalancer, ControlPlane1)).RunAsync(CancellationToken.None);

        Assert.Equal(LoadBalancer, await _tickets.NextCallAsync());
        _clock.Advance(Timeout - TimeSpan.FromMilliseconds(1));
        Assert.Single(_tickets.Calls);
        _clock.Advance(TimeSpan.FromMilliseconds(1));

        Assert.Equal(ControlPlane1, await _tickets.NextCallAsync());
        await run.WaitAsync(TestLimits.Hang);
        Assert.True(_race.IsDecided);
        Assert.Equal($"{LoadBalancer}: timed out after 3 s", _status.Snapshot().LastError);
    }

    [Fact]
    public async Task RunAsync_EndpointLookupHangs_RoundFailsAfterTheTimeout_RetriedAfterTheInterval()
    {
        var endpoints = new FakeEndpoints(
            ct => FakeTicketClient.Hang<IReadOnlyList<string>>(ct),
            _ => Task.FromResult<IReadOnlyList<string>>([ControlPlane1]));
        _tickets.OnRejoin(ControlPlane1, (uuid, _) => Task.FromResult(Ticket(_disk.Master, uuid)));
        var run = Client(endpoints).RunAsync(CancellationToken.None);

        await _clock.FireAsync(Timeout);
        await _clock.WaitForTimerAsync(Interval);
        Assert.Equal("failed to get control-plane endpoints: timed out after 3 s", _status.Snapshot().LastError);
        Assert.Empty(_tickets.Calls);
        _clock.Advance(Interval);

        await run.WaitAsync(TestLimits.Hang);
        Assert.Equal([ControlPlane1], _tickets.Calls);
        Assert.True(_race.IsDecided);
    }

    [Fact]
    public async Task RunAsync_JoinServiceSendsAnotherClustersKey_RefusedAndReported_DiskUntouched()
    {
        using var other = MasterSecret.Generate();
        _tickets.OnRejoin(LoadBalancer, (uuid, _) => Task.FromResult(Ticket(other, uuid)));
        var run = Client(FakeEndpoints.Of(LoadBalancer)).RunAsync(CancellationToken.None);
        var before = _disk.ImageHash();

        await _clock.WaitForTimerAsync(Interval);

        Assert.False(_race.IsDecided);
        Assert.Equal(before, _disk.ImageHash());
        Assert.Equal($"{LoadBalancer}: state disk key rejected", _status.Snapshot().LastError);
        _tickets.OnRejoin(LoadBalancer, (uuid, _) => Task.FromResult(Ticket(_disk.Master, uuid)));
        _clock.Advance(Interval);
        await run.WaitAsync(TestLimits.Hang);
        Assert.True(_race.IsDecided);
    }

    [Fact]
    public async Task RunAsync_TicketWithShortKeys_Refused()
    {
        _tickets.OnRejoin(LoadBalancer, (_, _) => Task.FromResult(new IssueRejoinTicketResponse
        {
            StateDiskKey = ByteString.CopyFrom(new byte[16]),
            MeasurementSecret = ByteString.CopyFrom(new byte[16]),
        }));
        using var stop = new CancellationTokenSource();
        var run = Client(FakeEndpoints.Of(LoadBalancer)).RunAsync(stop.Token);

        await _clock.WaitForTimerAsync(Interval);

        Assert.False(_race.IsDecided);
        Assert.Equal($"{LoadBalancer}: rejoin ticket has keys of the wrong length", _status.Snapshot().LastError);
        await stop.CancelAsync();
        await run.WaitAsync(TestLimits.Hang);
    }

    [Fact]
    public async Task RunAsync_RecoveryWinsWhileWaitingForTheNextRound_RejoinStopsWithoutAskingAgain()
    {
        var endpoints = FakeEndpoints.Of(LoadBalancer);
        var run = Client(endpoints).RunAsync(CancellationToken.None);
        await _clock.WaitForTimerAsync(Interval);

        // The operator's recover call reaches the RecoveryServer first.
        Assert.Equal(KeyVerdict.Accepted, await _race.OfferAsync(_disk.RightKeys("recovery"), CancellationToken.None));
        _clock.Advance(Interval);

        await run.WaitAsync(TestLimits.Hang);
        Assert.Equal(1, endpoints.Lookups);
        Assert.Equal("recovery", (await _race.Winner).Keys.Source);
    }

    [Fact]
    public async Task RunAsync_RejoinKeyArrivesAfterRecoveryWon_AlreadyRecovered_FirstWinnerStays()
    {
        _tickets.OnRejoin(LoadBalancer, async (uuid, _) =>
        {
            // The recovery wins while this JoinService is still answering.
            await _race.OfferAsync(_disk.RightKeys("recovery"), CancellationToken.None);
            return Ticket(_disk.Master, uuid);
        });

        await Client(FakeEndpoints.Of(LoadBalancer, ControlPlane1)).RunAsync(CancellationToken.None).WaitAsync(TestLimits.Hang);

        Assert.Equal([LoadBalancer], _tickets.Calls);
        Assert.Equal("recovery", (await _race.Winner).Keys.Source);
        Assert.Equal(0, _status.Snapshot().RejoinAttempts);
    }

    [Fact]
    public async Task RunAsync_CancelledWhileAJoinServiceHangs_StopsWithoutThrowing()
    {
        _tickets.OnRejoin(LoadBalancer, (_, ct) => FakeTicketClient.Hang<IssueRejoinTicketResponse>(ct));
        using var stop = new CancellationTokenSource();
        var run = Client(FakeEndpoints.Of(LoadBalancer)).RunAsync(stop.Token);
        await _tickets.NextCallAsync();

        await stop.CancelAsync();

        await run.WaitAsync(TestLimits.Hang);
        Assert.False(_race.IsDecided);
        Assert.Equal(0, _status.Snapshot().RejoinAttempts);
    }

    [Fact]
    public async Task RunAsync_CancelledWhileACallIsInFlight_GrpcCancelledStatus_StopsWithoutThrowing()
    {
        // A real gRPC client does not throw OperationCanceledException when its token fires mid-call but an
        // RpcException with status Cancelled ("Call canceled by the client"): the node stops its rejoin that way the
        // moment the RecoveryServer wins, and that must not fail the boot.
        _tickets.OnRejoin(LoadBalancer, async (_, ct) =>
        {
            try
            {
                return await FakeTicketClient.Hang<IssueRejoinTicketResponse>(ct);
            }
            catch (OperationCanceledException)
            {
                throw new RpcException(new Status(StatusCode.Cancelled, "Call canceled by the client."));
            }
        });
        using var stop = new CancellationTokenSource();
        var run = Client(FakeEndpoints.Of(LoadBalancer)).RunAsync(stop.Token);
        await _tickets.NextCallAsync();

        await stop.CancelAsync();

        await run.WaitAsync(TestLimits.Hang);
        Assert.False(_race.IsDecided);
    }

    [Fact]
    public async Task RunAsync_KeyslotAlreadyMovedToGeneration2_ResponseWithBothGenerations_NextPairUnlocks()
    {
        // The node crashed after its keyslot flip and before its confirmation reached the registry: the registry (and
        // so the rejoin's first pair) still says generation 1.
        using var next = MasterSecret.Generate();
        MoveToGeneration2(next);
        _tickets.OnRejoin(LoadBalancer, (uuid, _) => Task.FromResult(WithNext(Ticket(_disk.Master, uuid), next, uuid)));

        await Client(FakeEndpoints.Of(LoadBalancer)).RunAsync(CancellationToken.None).WaitAsync(TestLimits.Hang);

        var winner = await _race.Winner;
        using var expected = KeyDerivation.DeriveDiskKey(next, _disk.Uuid, 2);
        Assert.Equal(expected.ToArray(), winner.Keys.DiskKey.ToArray());
        Assert.Equal(2, winner.State.KeyGeneration);
        Assert.Equal(0, _status.Snapshot().RejoinAttempts);
    }

    [Fact]
    public async Task RunAsync_KeyslotMovedButResponseWithoutNextGeneration_Refused()
    {
        using var next = MasterSecret.Generate();
        MoveToGeneration2(next);
        _tickets.OnRejoin(LoadBalancer, (uuid, _) => Task.FromResult(Ticket(_disk.Master, uuid)));
        using var stop = new CancellationTokenSource();
        var run = Client(FakeEndpoints.Of(LoadBalancer)).RunAsync(stop.Token);

        await _clock.WaitForTimerAsync(Interval);

        Assert.False(_race.IsDecided);
        Assert.Equal($"{LoadBalancer}: state disk key rejected", _status.Snapshot().LastError);
        await stop.CancelAsync();
        await run.WaitAsync(TestLimits.Hang);
    }

    [Fact]
    public async Task RunAsync_NextPairOfAnotherCluster_Refused_DiskUntouched()
    {
        using var next = MasterSecret.Generate();
        using var foreign = MasterSecret.Generate();
        MoveToGeneration2(next);
        var before = _disk.ImageHash();
        _tickets.OnRejoin(LoadBalancer, (uuid, _) => Task.FromResult(WithNext(Ticket(_disk.Master, uuid), foreign, uuid)));
        using var stop = new CancellationTokenSource();
        var run = Client(FakeEndpoints.Of(LoadBalancer)).RunAsync(stop.Token);

        await _clock.WaitForTimerAsync(Interval);

        Assert.False(_race.IsDecided);
        Assert.Equal(before, _disk.ImageHash());
        await stop.CancelAsync();
        await run.WaitAsync(TestLimits.Hang);
    }

    [Fact]
    public async Task RunAsync_NextGenerationKeysOfTheWrongLength_Refused()
    {
        _tickets.OnRejoin(LoadBalancer, (uuid, _) =>
        {
            var ticket = Ticket(_disk.Master, uuid);
            ticket.NextKeyGeneration = 2;
            ticket.NextStateDiskKey = ByteString.CopyFrom(new byte[16]);
            return Task.FromResult(ticket);
        });
        using var stop = new CancellationTokenSource();
        var run = Client(FakeEndpoints.Of(LoadBalancer)).RunAsync(stop.Token);

        await _clock.WaitForTimerAsync(Interval);

        Assert.False(_race.IsDecided);
        Assert.Equal($"{LoadBalancer}: rejoin ticket has next-generation keys of the wrong length", _status.Snapshot().LastError);
        await stop.CancelAsync();
        await run.WaitAsync(TestLimits.Hang);
    }

    /// <summary>What a rotation step leaves after its flip: node state at generation 2, keyslot 0 on generation 2's key.</summary>
    private void MoveToGeneration2(MasterSecret next)
    {
        var directory = new Asterism.Node.State.NodeStateDirectory(_disk.StateRoot, null, "directory");
        var state = NodeState.Read(directory);
        state.WithKeyGeneration(2, KeyDerivation.DeriveKeyCheck(next, _disk.MeasurementSalt)).WriteTo(directory);
        using var oldKey = KeyDerivation.DeriveDiskKey(_disk.Master, _disk.Uuid);
        using var newKey = KeyDerivation.DeriveDiskKey(next, _disk.Uuid, 2);
        Assert.Equal(Asterism.Disk.DiskKeyRotationResult.Rotated, _disk.Disk.RotateKey(oldKey.Span, newKey.Span));
    }

    private static IssueRejoinTicketResponse WithNext(IssueRejoinTicketResponse ticket, MasterSecret next, string diskUuid)
    {
        using var key = KeyDerivation.DeriveDiskKey(next, diskUuid, 2);
        using var secret = KeyDerivation.DeriveMeasurementSecret(next);
        ticket.KeyGeneration = 1;
        ticket.NextKeyGeneration = 2;
        ticket.NextStateDiskKey = ByteString.CopyFrom(key.Span);
        ticket.NextMeasurementSecret = ByteString.CopyFrom(secret.Span);
        return ticket;
    }

    private RejoinClient Client(IJoinEndpointSource endpoints) =>
        new(_disk.Uuid, new TicketRounds(endpoints, Interval, Timeout, _clock), _tickets, _race, _status, NullLoggerFactory.Instance);

    private static IssueRejoinTicketResponse Ticket(MasterSecret master, string diskUuid)
    {
        using var key = KeyDerivation.DeriveDiskKey(master, diskUuid);
        using var secret = KeyDerivation.DeriveMeasurementSecret(master);
        return new IssueRejoinTicketResponse { StateDiskKey = ByteString.CopyFrom(key.Span), MeasurementSecret = ByteString.CopyFrom(secret.Span) };
    }
}
