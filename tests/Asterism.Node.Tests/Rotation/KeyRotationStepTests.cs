using Asterism.Attestation;
using Asterism.Crypto;
using Asterism.Disk;
using Asterism.JoinService;
using Asterism.Node.BootProgress;
using Asterism.Node.Rejoin;
using Asterism.Node.Rotation;
using Asterism.Node.State;
using Asterism.Node.Tests.Fakes;
using Asterism.Node.Tickets;
using Asterism.Node.Unlock;
using Asterism.Protocol.Join;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Node.Tests.Rotation;

/// <summary>
/// A running node's rotation from generation 1 to 2 on a real LUKS2 image, cut short at every step (the node "crashes":
/// the step throws there, everything in memory is dropped). Each time the node reboots through the key race with what
/// a rejoin then carries (the registry generation's pair, and the next one while the rotation is pending), and the next
/// loop round completes the rotation: keyslot 0 opens with generation 2's key only, the node state names generation 2,
/// the registry has the confirmation, and a recovery with the new master secret passes the key race.
/// </summary>
public sealed class KeyRotationStepTests : IDisposable
{
    private const string Endpoint = "127.0.1.11:30091";
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(7);
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(3);

    private readonly List<IDisposable> _owned = [];
    private readonly TestClock _clock = new();

    public void Dispose()
    {
        foreach (var d in Enumerable.Reverse(_owned))
        {
            d.Dispose();
        }
    }

    public static TheoryData<RotationStepPoint, NodeRole> Crashes()
    {
        var data = new TheoryData<RotationStepPoint, NodeRole>();
        foreach (var point in Enum.GetValues<RotationStepPoint>())
        {
            data.Add(point, NodeRole.Worker);
            data.Add(point, NodeRole.ControlPlane);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Crashes))]
    public async Task Run_CrashAtEveryStep_RebootUnlocksWithOldOrNewKey_NextRoundCompletes(RotationStepPoint crash, NodeRole role)
    {
        var world = World(role);
        await using (var node = await world.BootAsync(_clock))
        {
            var step = node.Step(p => { if (p == crash) { throw new SimulatedCrash(); } });
            await Assert.ThrowsAsync<SimulatedCrash>(() => step.RunAsync(Endpoint, r => world.Server.RotateKeyAsync(Endpoint, r, default), default));
        }

        // Reboot: the rejoin carries generation 1's pair and, while the registry is behind, generation 2's.
        await using (var node = await world.BootAsync(_clock))
        {
            var flipped = crash is RotationStepPoint.AfterFlip or RotationStepPoint.AfterConfirm;
            Assert.Equal(flipped ? world.Key(2) : world.Key(1), node.UnlockedWith);
            Assert.Equal(crash == RotationStepPoint.BeforeStateWrite ? 1 : 2, node.State.KeyGeneration);
            if (role == NodeRole.ControlPlane)
            {
                // The next secret was stored before anything else moved.
                Assert.Equal(2, node.Secrets!.NextGeneration);
            }

            var confirmed = await node.Loop().RoundAsync(default);

            Assert.Equal(crash == RotationStepPoint.AfterConfirm ? 0 : 2, confirmed);
        }
        Assert.Equal(2, world.Server.RegistryGeneration);
        world.AssertKeyslotOpensOnlyWith(2);
        await world.AssertRecoveryWithGeneration2PassesAsync();

        // Completion: the cluster's generation moves to 2; a control plane promotes its next secret at its next round.
        world.Server.Complete();
        await using (var node = await world.BootAsync(_clock))
        {
            Assert.Equal(world.Key(2), node.UnlockedWith);
            Assert.Equal(0, await node.Loop().RoundAsync(default));
            if (role == NodeRole.ControlPlane)
            {
                Assert.Equal(2, node.Secrets!.Generation);
                Assert.Equal(0, node.Secrets.NextGeneration);
            }
        }
        if (role == NodeRole.ControlPlane)
        {
            using var secrets = ClusterSecretFiles.Read(world.Directory, NodeState.Read(world.Directory));
            Assert.Equal(2, secrets.Generation);
            using var current = secrets.ForGeneration(2)!;
            Assert.Equal(world.Masters[2].Key.ToArray(), current.Key.ToArray());
            using var gen1Secret = KeyDerivation.DeriveMeasurementSecret(world.Masters[1]);
            Assert.Equal(gen1Secret.ToArray(), secrets.ClusterMeasurementSecret.ToArray());
            Assert.Empty(Directory.GetFiles(world.Directory.PathOf("asterism"), "master_secret.next-gen*"));
        }
    }

    [Fact]
    public async Task Run_ControlPlaneWhoseJoinServiceAlreadyHoldsTheNextSecret_StillStoresItBeforeTheKeyslotMoves()
    {
        // The control plane's own JoinService opens the rotation's seal for the first caller and keeps the secret in
        // memory (ClusterSecrets.SetNext). That must not count as stored: only the file survives a crash after the flip.
        var world = World(NodeRole.ControlPlane);
        await using (var node = await world.BootAsync(_clock))
        {
            node.Secrets!.SetNext(MasterSecret.FromBytes(world.Masters[2].Key, world.Masters[2].Salt), 2);
            var step = node.Step(p => { if (p == RotationStepPoint.AfterFlip) { throw new SimulatedCrash(); } });
            await Assert.ThrowsAsync<SimulatedCrash>(() => step.RunAsync(Endpoint, r => world.Server.RotateKeyAsync(Endpoint, r, default), default));
        }

        await using (var node = await world.BootAsync(_clock))
        {
            Assert.Equal(world.Key(2), node.UnlockedWith);
            Assert.Equal(2, node.Secrets!.NextGeneration);
            using var next = node.Secrets.ForGeneration(2)!;
            Assert.Equal(world.Masters[2].Key.ToArray(), next.Key.ToArray());
        }
    }

    [Fact]
    public async Task RunAsync_AfterBoot_FirstAskWaitsARandomPartOfTheInterval_ThenAsks()
    {
        // Every worker boots in the same second after a recovery: their first asks are spread over one interval
        // instead of all hitting the control planes at once, while those still release keys.
        var world = World(NodeRole.Worker);
        await using var node = await world.BootAsync(_clock);
        var loopClock = new TestClock();
        using var stop = new CancellationTokenSource();

        var run = node.Loop(loopClock).RunAsync(stop.Token);
        var firstWait = await loopClock.NextTimerAsync(run);

        Assert.NotNull(firstWait);
        Assert.InRange(firstWait.Value, TimeSpan.Zero, Interval - TimeSpan.FromTicks(1));
        Assert.Empty(world.Server.Requests);
        loopClock.Advance(firstWait.Value);
        using var limit = new CancellationTokenSource(TestLimits.Hang);
        while (world.Server.RegistryGeneration != 2)
        {
            await Task.Delay(10, limit.Token);
        }
        Assert.Equal(2, NodeState.Read(world.Directory).KeyGeneration);
        await stop.CancelAsync();
        await run;
    }

    [Theory]
    [InlineData(0.0, 0)]
    [InlineData(0.5, 3500)]
    [InlineData(0.999, 6993)]
    public void FirstAskDelay_Fraction_ThatPartOfTheInterval(double fraction, int expectedMs) =>
        Assert.Equal(TimeSpan.FromMilliseconds(expectedMs), RotationLoop.FirstAskDelay(Interval, fraction));

    [Theory]
    [InlineData(1.0)]
    [InlineData(-0.1)]
    public void FirstAskDelay_FractionOutside0To1_Throws(double fraction) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => RotationLoop.FirstAskDelay(Interval, fraction));

    [Fact]
    public async Task Run_NothingPending_NoChange()
    {
        var world = World(NodeRole.Worker);
        world.Server.Pending = false;
        var before = world.Disk.ImageHash();
        await using var node = await world.BootAsync(_clock);

        Assert.Equal(0, await node.Loop().RoundAsync(default));

        Assert.Equal(before, world.Disk.ImageHash());
        Assert.Equal(1, node.State.KeyGeneration);
        Assert.Equal([0u], world.Server.Requests.Select(r => r.ConfirmGeneration));
    }

    [Fact]
    public async Task Run_OfferedKeyCheckOfTheWrongLength_NothingWrittenNoConfirmation()
    {
        var world = World(NodeRole.Worker);
        world.Server.Tamper = r => r.KeyCheck = ByteString.CopyFrom(new byte[5]);
        var before = world.Disk.ImageHash();
        await using var node = await world.BootAsync(_clock);

        Assert.Equal(0, await node.Loop().RoundAsync(default));

        Assert.Equal(before, world.Disk.ImageHash());
        Assert.Equal(1, NodeState.Read(world.Directory).KeyGeneration);
        Assert.Equal(1, world.Server.RegistryGeneration);
    }

    [Fact]
    public async Task Run_ControlPlaneOfferWithoutTheNextMasterSecret_NothingMoves()
    {
        var world = World(NodeRole.ControlPlane);
        world.Server.Tamper = r => r.MasterKey = ByteString.Empty;
        var before = world.Disk.ImageHash();
        await using var node = await world.BootAsync(_clock);

        Assert.Equal(0, await node.Loop().RoundAsync(default));

        Assert.Equal(before, world.Disk.ImageHash());
        Assert.Equal(1, world.Server.RegistryGeneration);
        Assert.Equal(0, node.Secrets!.NextGeneration);
    }

    [Fact]
    public async Task Run_OfferedKeyAfterTheKeyslotMovedElsewhere_RejectedNotConfirmed()
    {
        // Keyslot 0 holds neither the running key nor the offered one (it moved behind the node's back): nothing is
        // confirmed, so the registry never claims a generation the disk does not open with.
        var world = World(NodeRole.Worker);
        await using var node = await world.BootAsync(_clock);
        using var other = SecretBytes.Random(32);
        using (var disk = StateDisk.Open(world.Disk.ImagePath))
        {
            Assert.Equal(DiskKeyRotationResult.Rotated, disk.RotateKey(world.Key(1), other.Span));
        }

        Assert.Equal(0, await node.Loop().RoundAsync(default));

        Assert.Equal(1, world.Server.RegistryGeneration);
        Assert.DoesNotContain(world.Server.Requests, r => r.ConfirmGeneration != 0);
    }

    private RotationWorld World(NodeRole role)
    {
        var world = new RotationWorld(role, Interval, Timeout);
        _owned.Add(world);
        return world;
    }

    private sealed class SimulatedCrash : Exception;

    /// <summary>A cluster of one node: its disk, two master-secret generations, and a control plane's registry and gate as a fake.</summary>
    private sealed class RotationWorld : IDisposable
    {
        private readonly TimeSpan _interval;
        private readonly TimeSpan _timeout;

        public RotationWorld(NodeRole role, TimeSpan interval, TimeSpan timeout)
        {
            Role = role;
            _interval = interval;
            _timeout = timeout;
            Disk = TestDisk.CreateInitialized(role);
            Masters = new Dictionary<int, MasterSecret> { [1] = MasterSecret.FromBytes(Disk.Master.Key, Disk.Master.Salt), [2] = MasterSecret.Generate() };
            Directory = new NodeStateDirectory(Disk.StateRoot, null, "directory");
            Server = new FakeRotationServer(this);
            if (role == NodeRole.ControlPlane)
            {
                using var secrets = new ClusterSecrets(MasterSecret.FromBytes(Masters[1].Key, Masters[1].Salt), Disk.MeasurementSalt,
                    new AttestationPolicy { Variant = AttestationVariant.Simulated, Measurements = Measurements.Empty, TrustAnyKey = true });
                ClusterSecretFiles.Write(Directory, secrets);
            }
        }

        public NodeRole Role { get; }

        public TestDisk Disk { get; }

        public Dictionary<int, MasterSecret> Masters { get; }

        public NodeStateDirectory Directory { get; }

        public FakeRotationServer Server { get; }

        public byte[] Key(int generation)
        {
            using var key = KeyDerivation.DeriveDiskKey(Masters[generation], Disk.Uuid, generation);
            return key.ToArray();
        }

        public byte[] KeyCheck(int generation) => KeyDerivation.DeriveKeyCheck(Masters[generation], Disk.MeasurementSalt);

        /// <summary>A boot: a fresh view of the image, the key race fed by one rejoin round, the node's secrets from its files.</summary>
        public async Task<BootedNode> BootAsync(TestClock clock)
        {
            var disk = StateDisk.Open(Disk.ImagePath);
            var volume = new DirectoryStateVolume(disk, Disk.StateRoot);
            var race = new KeyRace(volume);
            var tickets = new FakeTicketClient();
            tickets.OnRejoin("lb", (uuid, _) => Task.FromResult(Server.Rejoin(uuid)));
            var options = Disk.Options(_interval, _timeout, Role);
            var rejoin = new RejoinClient(disk.Uuid, new TicketRounds(FakeEndpoints.Of("lb"), _interval, _timeout, clock), tickets, race,
                new BootStatusTracker(options, clock), NullLoggerFactory.Instance);
            await rejoin.RunAsync(CancellationToken.None).WaitAsync(TestLimits.Hang);
            var win = await race.Winner.WaitAsync(TestLimits.Hang);
            var unlockedWith = win.Keys.DiskKey.ToArray();
            var key = new RunningDiskKey(SecretBytes.CopyOf(win.Keys.DiskKey.Span));
            win.Keys.Dispose();
            var secrets = Role == NodeRole.ControlPlane ? ClusterSecretFiles.Read(win.Directory, win.State) : null;
            return new BootedNode(this, disk, win.Directory, win.State, key, secrets, unlockedWith);
        }

        public void AssertKeyslotOpensOnlyWith(int generation)
        {
            using var disk = StateDisk.Open(Disk.ImagePath);
            Assert.True(disk.TryUnlock(Key(generation)));
            Assert.False(disk.TryUnlock(Key(generation == 2 ? 1 : 2)));
            var state = NodeState.Read(Directory);
            Assert.Equal(generation, state.KeyGeneration);
            Assert.Equal(KeyCheck(generation), state.EffectiveKeyCheck);
        }

        /// <summary>The operator recovers with generation 2's master secret only: the race accepts it; generation 1's no longer opens.</summary>
        public async Task AssertRecoveryWithGeneration2PassesAsync()
        {
            using var disk = StateDisk.Open(Disk.ImagePath);
            var race = new KeyRace(new DirectoryStateVolume(disk, Disk.StateRoot));
            Assert.Equal(KeyVerdict.DiskKeyRejected, await race.OfferAsync(new ReceivedKeys(SecretBytes.CopyOf(Key(1)), KeyDerivation.DeriveMeasurementSecret(Masters[1]), "recovery"), default));
            Assert.Equal(KeyVerdict.Accepted, await race.OfferAsync(new ReceivedKeys(SecretBytes.CopyOf(Key(2)), KeyDerivation.DeriveMeasurementSecret(Masters[2]), "recovery"), default));
            var win = await race.Winner;
            win.Keys.Dispose();
            await win.Directory.DisposeAsync();
        }

        public void Dispose()
        {
            foreach (var m in Masters.Values)
            {
                m.Dispose();
            }
            Disk.Dispose();
        }
    }

    /// <summary>One boot of the node: what the race unlocked, and the rotation step and loop over it.</summary>
    private sealed class BootedNode(RotationWorld world, StateDisk disk, NodeStateDirectory directory, NodeState state, RunningDiskKey key, ClusterSecrets? secrets, byte[] unlockedWith) : IAsyncDisposable
    {
        private KeyRotationStep? _step;

        public NodeState State => _step?.State ?? state;

        public ClusterSecrets? Secrets => secrets;

        public byte[] UnlockedWith => unlockedWith;

        public KeyRotationStep Step(Action<RotationStepPoint>? atPoint = null) =>
            _step = new KeyRotationStep(disk, directory, state, key, secrets, NullLoggerFactory.Instance) { AtPoint = atPoint };

        public RotationLoop Loop(TimeProvider? time = null) => new(_step ?? Step(), FakeEndpoints.Of(Endpoint), world.Server,
            secrets is null ? null : _ => Task.FromResult(world.Server.ClusterGeneration), Interval, Timeout, NullLoggerFactory.Instance, time);

        public async ValueTask DisposeAsync()
        {
            secrets?.Dispose();
            key.Dispose();
            await directory.DisposeAsync();
            disk.Dispose();
        }
    }

    /// <summary>
    /// The control plane's side as RotationGate and the rejoin release answer it: the registry generation of this node,
    /// a pending rotation to 2 (offer with key check, and for a control plane the next master secret), confirmations.
    /// </summary>
    private sealed class FakeRotationServer(RotationWorld world) : IRotationClient
    {
        public int RegistryGeneration { get; private set; } = 1;

        public int ClusterGeneration { get; private set; } = 1;

        public bool Pending { get; set; } = true;

        public Action<RotateKeyResponse>? Tamper { get; set; }

        public List<RotateKeyRequest> Requests { get; } = [];

        public void Complete()
        {
            Assert.Equal(2, RegistryGeneration);
            ClusterGeneration = 2;
            Pending = false;
        }

        public Task<RotateKeyResponse> RotateKeyAsync(string endpoint, RotateKeyRequest request, CancellationToken cancellationToken)
        {
            Requests.Add(request.Clone());
            Assert.Equal(world.Disk.Uuid, request.DiskUuid);
            if (request.ConfirmGeneration != 0)
            {
                RegistryGeneration = (int)request.ConfirmGeneration;
                return Task.FromResult(new RotateKeyResponse { Generation = request.ConfirmGeneration });
            }
            if (!Pending || RegistryGeneration >= 2)
            {
                return Task.FromResult(new RotateKeyResponse());
            }
            var response = new RotateKeyResponse
            {
                Generation = 2,
                StateDiskKey = ByteString.CopyFrom(world.Key(2)),
                KeyCheck = ByteString.CopyFrom(world.KeyCheck(2)),
            };
            if (world.Role == NodeRole.ControlPlane)
            {
                response.MasterKey = ByteString.CopyFrom(world.Masters[2].Key);
                response.MasterSalt = ByteString.CopyFrom(world.Masters[2].Salt);
            }
            Tamper?.Invoke(response);
            return Task.FromResult(response);
        }

        public IssueRejoinTicketResponse Rejoin(string uuid)
        {
            var generation = Pending ? RegistryGeneration : ClusterGeneration;
            using var secret = KeyDerivation.DeriveMeasurementSecret(world.Masters[generation]);
            var response = new IssueRejoinTicketResponse
            {
                StateDiskKey = ByteString.CopyFrom(world.Key(generation)),
                MeasurementSecret = ByteString.CopyFrom(secret.Span),
                KeyGeneration = (uint)generation,
            };
            if (Pending && RegistryGeneration < 2)
            {
                using var next = KeyDerivation.DeriveMeasurementSecret(world.Masters[2]);
                response.NextKeyGeneration = 2;
                response.NextStateDiskKey = ByteString.CopyFrom(world.Key(2));
                response.NextMeasurementSecret = ByteString.CopyFrom(next.Span);
            }
            return response;
        }
    }
}
