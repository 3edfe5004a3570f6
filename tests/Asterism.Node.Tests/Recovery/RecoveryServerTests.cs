using Asterism.Crypto;
using Asterism.Node.Recovery;
using Asterism.Node.Tests.Fakes;
using Asterism.Node.Unlock;
using Asterism.Protocol.Recover;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Node.Tests.Recovery;

/// <summary>The recover call as the CLI makes it: measurement secret, the node names its disk, the disk key, half-close.</summary>
public sealed class RecoveryServerTests : IDisposable
{
    private readonly TestDisk _disk = TestDisk.CreateInitialized();
    private readonly TestClock _clock = new();
    private readonly KeyRace _race;
    private readonly RecoveryServer _server;

    public RecoveryServerTests()
    {
        _race = new KeyRace(_disk.Volume);
        _server = new RecoveryServer(_race, new RecoveryIdentity(_disk.Uuid, "node-0", "control-plane"), NullLoggerFactory.Instance, _clock);
    }

    public void Dispose() => _disk.Dispose();

    [Fact]
    public async Task Recover_RightKeys_NamesDiskThenOk_RaceDecided()
    {
        var (requests, responses, call) = Start();
        using (var secret = KeyDerivation.DeriveMeasurementSecret(_disk.Master))
        {
            requests.Send(new RecoverMessage { MeasurementSecret = ByteString.CopyFrom(secret.Span) });
        }
        var named = await responses.NextAsync();
        Assert.Equal((_disk.Uuid, "node-0", "control-plane"), (named.DiskUuid, named.NodeName, named.Role));
        using (var key = KeyDerivation.DeriveDiskKey(_disk.Master, named.DiskUuid))
        {
            requests.Send(new RecoverMessage { StateDiskKey = ByteString.CopyFrom(key.Span) });
        }
        requests.HalfClose();

        await call.WaitAsync(TestLimits.Hang);
        Assert.Equal("recovery", (await _race.Winner).Keys.Source);
    }

    [Fact]
    public async Task Recover_AnotherClustersMasterSecret_FailedPrecondition_NodeKeepsWaiting()
    {
        using var other = MasterSecret.Generate();
        var before = _disk.ImageHash();

        var status = await RecoverWithAsync(other);

        Assert.Equal((StatusCode.FailedPrecondition, "state disk key rejected"), (status.StatusCode, status.Detail));
        Assert.False(_race.IsDecided);
        Assert.Equal(before, _disk.ImageHash());
        // Still serving: the right operator recovers the node afterwards.
        var (requests, responses, call) = Start();
        await SendKeysAsync(_disk.Master, requests, responses);
        requests.HalfClose();
        await call.WaitAsync(TestLimits.Hang);
        Assert.True(_race.IsDecided);
    }

    [Fact]
    public async Task Recover_AfterTheRejoinClientWon_Unavailable()
    {
        await _race.OfferAsync(_disk.RightKeys("rejoin"), CancellationToken.None);

        var (_, _, call) = Start();

        var error = await Assert.ThrowsAsync<RpcException>(() => call.WaitAsync(TestLimits.Hang));
        Assert.Equal((StatusCode.Unavailable, "node already recovered"), (error.StatusCode, error.Status.Detail));
    }

    [Theory]
    [InlineData(31)]
    [InlineData(33)]
    [InlineData(0)]
    public async Task Recover_MeasurementSecretOfWrongLength_InvalidArgument(int length)
    {
        var (requests, _, call) = Start();
        requests.Send(new RecoverMessage { MeasurementSecret = ByteString.CopyFrom(new byte[length]) });

        var error = await Assert.ThrowsAsync<RpcException>(() => call.WaitAsync(TestLimits.Hang));
        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
    }

    [Fact]
    public async Task Recover_KeyFirst_InvalidArgument()
    {
        var (requests, _, call) = Start();
        requests.Send(new RecoverMessage { StateDiskKey = ByteString.CopyFrom(new byte[KeyDerivation.KeyLength]) });

        var error = await Assert.ThrowsAsync<RpcException>(() => call.WaitAsync(TestLimits.Hang));
        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.False(_race.IsDecided);
    }

    [Fact]
    public async Task Recover_Probe_NamesDiskThenOk_NodeKeepsWaitingAndStillRecovers()
    {
        var before = _disk.ImageHash();
        var (requests, responses, call) = Start();
        requests.Send(new RecoverMessage { Probe = new Probe() });

        var named = await responses.NextAsync();
        await call.WaitAsync(TestLimits.Hang);

        Assert.Equal((_disk.Uuid, "node-0", "control-plane"), (named.DiskUuid, named.NodeName, named.Role));
        Assert.False(_race.IsDecided);
        Assert.Equal(before, _disk.ImageHash());
        // The rehearsal left the node as it was: a real recover call right after it unlocks the disk.
        var (realRequests, realResponses, realCall) = Start();
        await SendKeysAsync(_disk.Master, realRequests, realResponses);
        realRequests.HalfClose();
        await realCall.WaitAsync(TestLimits.Hang);
        Assert.True(_race.IsDecided);
    }

    [Fact]
    public async Task Recover_ProbeThenTheRightKeyInTheSameCall_KeyNeverReachesTheRace()
    {
        // An attacker cannot smuggle a key in behind a probe (skipping the measurement secret): the call ends after
        // the probe's answer and whatever follows is never read.
        var (requests, responses, call) = Start();
        requests.Send(new RecoverMessage { Probe = new Probe() });
        using (var key = KeyDerivation.DeriveDiskKey(_disk.Master, _disk.Uuid))
        {
            requests.Send(new RecoverMessage { StateDiskKey = ByteString.CopyFrom(key.Span) });
        }
        requests.HalfClose();

        await responses.NextAsync();
        await call.WaitAsync(TestLimits.Hang);
        Assert.False(_race.IsDecided);
    }

    [Fact]
    public async Task Recover_ManyProbesAndStalledSecretsAround_RealRecoveryStillWins()
    {
        // Probes and calls that stop after the measurement secret hold nothing the key race needs: with 200 of each
        // open or finished, the real recover call is decided as soon as it offers its key.
        var before = _disk.ImageHash();
        var stalled = new List<Task>();
        for (var i = 0; i < 200; i++)
        {
            var (probeRequests, probeResponses, probe) = Start();
            probeRequests.Send(new RecoverMessage { Probe = new Probe() });
            await probeResponses.NextAsync();
            await probe.WaitAsync(TestLimits.Hang);

            var (requests, responses, call) = Start();
            requests.Send(new RecoverMessage { MeasurementSecret = ByteString.CopyFrom(new byte[KeyDerivation.KeyLength]) });
            await responses.NextAsync();
            stalled.Add(call);
        }
        Assert.False(_race.IsDecided);
        Assert.Equal(before, _disk.ImageHash());

        var (realRequests, realResponses, realCall) = Start();
        await SendKeysAsync(_disk.Master, realRequests, realResponses);
        realRequests.HalfClose();
        await realCall.WaitAsync(TestLimits.Hang);
        Assert.Equal("recovery", (await _race.Winner).Keys.Source);
        Assert.All(stalled, call => Assert.False(call.IsCompleted));
    }

    [Fact]
    public async Task Recover_ProbeAfterTheRejoinClientWon_Unavailable()
    {
        await _race.OfferAsync(_disk.RightKeys("rejoin"), CancellationToken.None);

        var (requests, _, call) = Start();
        requests.Send(new RecoverMessage { Probe = new Probe() });

        var error = await Assert.ThrowsAsync<RpcException>(() => call.WaitAsync(TestLimits.Hang));
        Assert.Equal(StatusCode.Unavailable, error.StatusCode);
    }

    [Fact]
    public async Task Recover_ClientNeverHalfCloses_CallEndsAfterHalfCloseWaitOnTheNodesClock()
    {
        var (requests, responses, call) = Start();
        await SendKeysAsync(_disk.Master, requests, responses);

        // Accepted, but the call stays open for the client's half-close; on the fake clock it ends exactly when the
        // wait has passed, and not before.
        await _clock.WaitForTimerAsync(RecoveryServer.HalfCloseWait);
        Assert.True(_race.IsDecided);
        _clock.Advance(RecoveryServer.HalfCloseWait - TimeSpan.FromMilliseconds(1));
        Assert.False(call.IsCompleted);
        _clock.Advance(TimeSpan.FromMilliseconds(1));
        await call.WaitAsync(TestLimits.Hang);
    }

    [Fact]
    public async Task Recover_SilentAfterTheMeasurementSecret_DeadlineExceededAfterMessageWait_NodeKeepsWaiting()
    {
        // The attack: connect, send 32 bytes, go quiet, and hold the call for as long as the node waits. On the node's
        // clock the call ends exactly at MessageWait and nothing reached the key race.
        var (requests, responses, call) = Start();
        requests.Send(new RecoverMessage { MeasurementSecret = ByteString.CopyFrom(new byte[KeyDerivation.KeyLength]) });
        await responses.NextAsync();
        // One timer per awaited message: the first message's (already satisfied), then the second's.
        await _clock.WaitForTimerAsync(RecoveryServer.MessageWait);
        await _clock.WaitForTimerAsync(RecoveryServer.MessageWait);
        _clock.Advance(RecoveryServer.MessageWait - TimeSpan.FromMilliseconds(1));
        Assert.False(call.IsCompleted);
        _clock.Advance(TimeSpan.FromMilliseconds(1));

        var error = await Assert.ThrowsAsync<RpcException>(() => call.WaitAsync(TestLimits.Hang));
        Assert.Equal(StatusCode.DeadlineExceeded, error.StatusCode);
        Assert.False(_race.IsDecided);
    }

    [Fact]
    public async Task Recover_SilentBeforeTheFirstMessage_DeadlineExceededAfterMessageWait()
    {
        var (_, _, call) = Start();
        await _clock.WaitForTimerAsync(RecoveryServer.MessageWait);
        _clock.Advance(RecoveryServer.MessageWait);

        var error = await Assert.ThrowsAsync<RpcException>(() => call.WaitAsync(TestLimits.Hang));
        Assert.Equal(StatusCode.DeadlineExceeded, error.StatusCode);
    }

    private (FakeRequestStream<RecoverMessage>, FakeResponseStream<RecoverResponse>, Task) Start()
    {
        var requests = new FakeRequestStream<RecoverMessage>();
        var responses = new FakeResponseStream<RecoverResponse>();
        return (requests, responses, _server.Recover(requests, responses, new FakeCallContext()));
    }

    private static async Task SendKeysAsync(MasterSecret master, FakeRequestStream<RecoverMessage> requests, FakeResponseStream<RecoverResponse> responses)
    {
        using (var secret = KeyDerivation.DeriveMeasurementSecret(master))
        {
            requests.Send(new RecoverMessage { MeasurementSecret = ByteString.CopyFrom(secret.Span) });
        }
        var named = await responses.NextAsync();
        using var key = KeyDerivation.DeriveDiskKey(master, named.DiskUuid);
        requests.Send(new RecoverMessage { StateDiskKey = ByteString.CopyFrom(key.Span) });
    }

    private async Task<Status> RecoverWithAsync(MasterSecret master)
    {
        var (requests, responses, call) = Start();
        await SendKeysAsync(master, requests, responses);
        requests.HalfClose();
        var error = await Assert.ThrowsAsync<RpcException>(() => call.WaitAsync(TestLimits.Hang));
        return error.Status;
    }
}
