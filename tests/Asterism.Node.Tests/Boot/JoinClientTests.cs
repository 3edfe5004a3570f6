using Asterism.Attestation;
using Asterism.Attestation.Simulated;
using Asterism.Crypto;
using Asterism.Disk;
using Asterism.Node.Boot;
using Asterism.Node.Tests.Fakes;
using Asterism.Node.Tickets;
using Asterism.Protocol.Join;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Node.Tests.Boot;

/// <summary>A first boot's join rounds on a fake clock, applying the first good ticket to a real, freshly formatted disk.</summary>
public sealed class JoinClientTests : IDisposable
{
    private const string LoadBalancer = "127.0.1.2:30090";
    private const string ControlPlane1 = "127.0.1.11:30090";
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(7);
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(3);

    private readonly TestDisk _disk = TestDisk.CreateFormatted();
    private readonly TestClock _clock = new();
    private readonly FakeTicketClient _tickets = new();
    private readonly SimulatedPcrBank _pcrs = new();

    public void Dispose() => _disk.Dispose();

    [Fact]
    public async Task RunAsync_SecondEndpointSendsTicket_DiskInitializedWithTheDerivedKey_Pcr15Extended()
    {
        IssueJoinTicketRequest? asked = null;
        _tickets.OnJoin(ControlPlane1, (request, _) =>
        {
            asked = request;
            return Task.FromResult(Ticket(request.DiskUuid));
        });
        var (client, setup) = Client(NodeRole.Worker);

        await client.RunAsync(CancellationToken.None).WaitAsync(TestLimits.Hang);

        Assert.Equal([LoadBalancer, ControlPlane1], _tickets.Calls);
        Assert.Equal((_disk.Uuid, "node-0", false), (asked!.DiskUuid, asked.NodeName, asked.IsControlPlane));
        var result = await setup.Completed;
        Assert.Equal(NodeRole.Worker, result.State.Role);
        Assert.Null(result.Secrets);
        // The node state is a file now, 0600, and reads back as what was joined.
        Assert.Equal(NodeRole.Worker, NodeState.Read(result.Directory).Role);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(result.Directory.PathOf(Asterism.Node.State.NodeStateDirectory.NodeStateFile)));
        Assert.True(_disk.Disk.IsInitialized);
        Assert.NotEqual(new byte[32], _pcrs.Read(Measurements.ClusterIdIndex));
        using var reopened = StateDisk.Open(_disk.ImagePath);
        using var key = KeyDerivation.DeriveDiskKey(_disk.Master, _disk.Uuid);
        Assert.True(reopened.TryUnlock(key.Span));
        Assert.False(StateDisk.Open(_disk.ImagePath).TryUnlock(_disk.InitialPassphrase));
    }

    [Fact]
    public async Task RunAsync_TicketWithWrongLengths_NotApplied_NextRoundAfterTheInterval()
    {
        var calls = 0;
        _tickets.OnJoin(LoadBalancer, (request, _) =>
        {
            var ticket = Ticket(request.DiskUuid);
            if (++calls == 1)
            {
                ticket.MeasurementSalt = ByteString.CopyFrom(new byte[16]);
            }
            return Task.FromResult(ticket);
        });
        var (client, setup) = Client(NodeRole.Worker, LoadBalancer);
        var run = client.RunAsync(CancellationToken.None);

        await _clock.WaitForTimerAsync(Interval);
        Assert.False(setup.IsDone);
        Assert.Equal(new byte[32], _pcrs.Read(Measurements.ClusterIdIndex));
        _clock.Advance(Interval);

        await run.WaitAsync(TestLimits.Hang);
        Assert.True(setup.IsDone);
        Assert.Equal(2, calls);
    }

    [Fact]
    public async Task RunAsync_ControlPlaneTicketWithoutClusterSecrets_Refused_NothingExtended()
    {
        // A control plane must get the master secret and policy with its keys, or it could not serve as a JoinService.
        _tickets.OnJoin(LoadBalancer, (request, _) => Task.FromResult(Ticket(request.DiskUuid)));
        using var stop = new CancellationTokenSource();
        var (client, setup) = Client(NodeRole.ControlPlane, LoadBalancer);
        var run = client.RunAsync(stop.Token);

        await _clock.WaitForTimerAsync(Interval);

        Assert.False(setup.IsDone);
        Assert.Equal(new byte[32], _pcrs.Read(Measurements.ClusterIdIndex));
        await stop.CancelAsync();
        await run.WaitAsync(TestLimits.Hang);
    }

    [Fact]
    public async Task RunAsync_JoinServiceNeverAnswers_NextEndpointAfterTheTimeout()
    {
        _tickets.OnJoin(LoadBalancer, (_, ct) => FakeTicketClient.Hang<IssueJoinTicketResponse>(ct));
        _tickets.OnJoin(ControlPlane1, (request, _) => Task.FromResult(Ticket(request.DiskUuid)));
        var (client, setup) = Client(NodeRole.Worker);
        var run = client.RunAsync(CancellationToken.None);

        Assert.Equal(LoadBalancer, await _tickets.NextCallAsync());
        _clock.Advance(Timeout - TimeSpan.FromMilliseconds(1));
        Assert.Single(_tickets.Calls);
        _clock.Advance(TimeSpan.FromMilliseconds(1));

        await run.WaitAsync(TestLimits.Hang);
        Assert.True(setup.IsDone);
    }

    [Fact]
    public async Task RunAsync_RefusedEverywhere_KeepsAskingEveryInterval()
    {
        _tickets.OnJoin(LoadBalancer, (_, _) => FakeTicketClient.Refuse<IssueJoinTicketResponse>(StatusCode.PermissionDenied, "the disk does not belong to the caller"));
        using var stop = new CancellationTokenSource();
        var (client, _) = Client(NodeRole.Worker, LoadBalancer);
        var run = client.RunAsync(stop.Token);

        for (var round = 1; round <= 3; round++)
        {
            await _clock.FireAsync(Interval);
        }
        await _clock.WaitForTimerAsync(Interval);

        Assert.Equal(4, _tickets.Calls.Count);
        await stop.CancelAsync();
        await run.WaitAsync(TestLimits.Hang);
    }

    [Fact]
    public async Task RunAsync_TicketOfARotatedCluster_NodeStateKeepsGenerationAndKeyCheck_ClusterIdStays()
    {
        // The cluster moved to generation 2: the ticket's disk key is generation 2's, its measurement secret stays
        // generation 1's (the cluster ID), and the key check names generation 2's secret.
        using var gen2 = MasterSecret.Generate();
        _tickets.OnJoin(LoadBalancer, (request, _) =>
        {
            var ticket = Ticket(request.DiskUuid);
            using var key = KeyDerivation.DeriveDiskKey(gen2, request.DiskUuid, 2);
            ticket.StateDiskKey = ByteString.CopyFrom(key.Span);
            ticket.KeyGeneration = 2;
            ticket.KeyCheck = ByteString.CopyFrom(KeyDerivation.DeriveKeyCheck(gen2, _disk.MeasurementSalt));
            return Task.FromResult(ticket);
        });
        var (client, setup) = Client(NodeRole.Worker, LoadBalancer);

        await client.RunAsync(CancellationToken.None).WaitAsync(TestLimits.Hang);

        var result = await setup.Completed;
        var state = NodeState.Read(result.Directory);
        using var gen1Secret = KeyDerivation.DeriveMeasurementSecret(_disk.Master);
        Assert.Equal(KeyDerivation.DeriveClusterId(gen1Secret.Span, _disk.MeasurementSalt), state.ClusterId);
        Assert.Equal(2, state.KeyGeneration);
        Assert.Equal(KeyDerivation.DeriveKeyCheck(gen2, _disk.MeasurementSalt), state.KeyCheck);
        using var key2 = KeyDerivation.DeriveDiskKey(gen2, _disk.Uuid, 2);
        Assert.Equal(key2.ToArray(), result.DiskKey.ToArray());
    }

    [Fact]
    public async Task RunAsync_Generation2TicketWithoutKeyCheck_Refused_NothingExtended()
    {
        _tickets.OnJoin(LoadBalancer, (request, _) =>
        {
            var ticket = Ticket(request.DiskUuid);
            ticket.KeyGeneration = 2;
            return Task.FromResult(ticket);
        });
        using var stop = new CancellationTokenSource();
        var (client, setup) = Client(NodeRole.Worker, LoadBalancer);
        var run = client.RunAsync(stop.Token);

        await _clock.WaitForTimerAsync(Interval);

        Assert.False(setup.IsDone);
        Assert.Equal(new byte[32], _pcrs.Read(Measurements.ClusterIdIndex));
        await stop.CancelAsync();
        await run.WaitAsync(TestLimits.Hang);
    }

    private (JoinClient, FirstBootSetup) Client(NodeRole role, params string[] endpoints)
    {
        var options = _disk.Options(Interval, Timeout, role);
        var setup = new FirstBootSetup(_disk.Disk, _disk.Volume, _disk.InitialPassphrase, options, _pcrs, NullLoggerFactory.Instance);
        var source = FakeEndpoints.Of(endpoints.Length == 0 ? [LoadBalancer, ControlPlane1] : endpoints);
        return (new JoinClient(options, _disk.Uuid, new TicketRounds(source, Interval, Timeout, _clock), _tickets, setup, NullLoggerFactory.Instance), setup);
    }

    private IssueJoinTicketResponse Ticket(string diskUuid)
    {
        using var key = KeyDerivation.DeriveDiskKey(_disk.Master, diskUuid);
        using var secret = KeyDerivation.DeriveMeasurementSecret(_disk.Master);
        return new IssueJoinTicketResponse
        {
            StateDiskKey = ByteString.CopyFrom(key.Span),
            MeasurementSecret = ByteString.CopyFrom(secret.Span),
            MeasurementSalt = ByteString.CopyFrom(_disk.MeasurementSalt),
        };
    }
}
