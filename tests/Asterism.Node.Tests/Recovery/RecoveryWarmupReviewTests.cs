using System.Collections.Concurrent;
using Asterism.Node.Recovery;
using Asterism.Node.Tests.Fakes;
using Asterism.Node.Unlock;
using Asterism.Protocol.Recover;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Tests.Recovery;

/// <summary>
/// From the attacker review of the first warm-up (token in the probe message, so "Received recover call" waited for
/// the call's first message): a silent caller stayed out of the log while it held its call, and the node's own probe
/// was logged as a recover call when the race was decided or the probe cancelled. The token now travels in the
/// request headers and is recognised at call start.
/// </summary>
public sealed class RecoveryWarmupReviewTests : IDisposable
{
    private readonly TestDisk _disk = TestDisk.CreateInitialized();
    private readonly TestClock _clock = new();
    private readonly Recording _log = new();
    private readonly RecoveryWarmup _warmup = new();
    private readonly KeyRace _race;
    private readonly RecoveryServer _server;

    public RecoveryWarmupReviewTests()
    {
        _race = new KeyRace(_disk.Volume);
        _server = new RecoveryServer(_race, new RecoveryIdentity(_disk.Uuid, "node-0", "control-plane"), _log, _clock, _warmup);
    }

    public void Dispose()
    {
        _disk.Dispose();
        _log.Dispose();
    }

    [Fact]
    public async Task Recover_CallerSilentBeforeTheFirstMessage_LoggedAsReceivedAtOnce()
    {
        // The attack: open recover calls and send nothing. Every call but the node's own warm-up must be in the log
        // the moment it arrives, not only when its caller sends, leaves or is timed out (30 s later), or never when
        // the process ends first.
        var requests = new FakeRequestStream<RecoverMessage>();
        var call = _server.Recover(requests, new FakeResponseStream<RecoverResponse>(), new FakeCallContext());
        await _clock.WaitForTimerAsync(RecoveryServer.MessageWait);

        var loggedWhileHeld = _log.Entries.Any(e => e.Id == 1202 && e.Level == LogLevel.Information);

        _clock.Advance(RecoveryServer.MessageWait);
        await Assert.ThrowsAsync<RpcException>(() => call.WaitAsync(TestLimits.Hang));
        Assert.True(loggedWhileHeld, "a recover call held open without a first message is not in the log");
    }

    [Fact]
    public async Task Recover_OwnWarmupProbeArrivingAfterTheRaceIsDecided_NotLoggedAsARecoverCall()
    {
        // Rejoin wins while the warm-up's probe is on its way (they run concurrently; the probe's cancellation cannot
        // recall headers already sent): the node's own probe is then logged at INFO as somebody's recover call, which
        // the E2E tests read as "somebody dialled this node" (NodeRecoveryTests, OperatorCliTests, RevokedRecoveryTests).
        Assert.Equal(KeyVerdict.Accepted, await _race.OfferAsync(_disk.RightKeys("rejoin"), CancellationToken.None));
        var requests = new FakeRequestStream<RecoverMessage>();
        var context = OwnContext(CancellationToken.None);

        var call = _server.Recover(requests, new FakeResponseStream<RecoverResponse>(), context);
        requests.Send(OwnProbe());
        requests.HalfClose();
        await Assert.ThrowsAsync<RpcException>(() => call.WaitAsync(TestLimits.Hang));

        Assert.DoesNotContain(_log.Entries, e => e.Id == 1202 && e.Level >= LogLevel.Information);
    }

    [Fact]
    public async Task Recover_OwnWarmupProbeCancelledBeforeItsMessage_NotLoggedAsARecoverCall()
    {
        // The warm-up's 10 s limit or the node's stop (rejoin won) cancels its probe between the call's headers and its
        // first message: the catch around the first read logs the node's own probe as a received recover call.
        using var cancel = new CancellationTokenSource();
        var requests = new FakeRequestStream<RecoverMessage>();
        var context = OwnContext(cancel.Token);

        var call = _server.Recover(requests, new FakeResponseStream<RecoverResponse>(), context);
        await _clock.WaitForTimerAsync(RecoveryServer.MessageWait);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call.WaitAsync(TestLimits.Hang));

        Assert.DoesNotContain(_log.Entries, e => e.Id == 1202 && e.Level >= LogLevel.Information);
    }

    /// <summary>A call context carrying the token where the server can see it before any message: request metadata.</summary>
    private FakeCallContext OwnContext(CancellationToken cancellationToken)
    {
        var context = new FakeCallContext(cancellationToken: cancellationToken);
        context.RequestHeaders.Add(RecoveryWarmup.TokenHeader, _warmup.Token.ToArray());
        return context;
    }

    private static RecoverMessage OwnProbe() => new() { Probe = new Probe() };

    /// <summary>Keeps every log entry's event id and level.</summary>
    private sealed class Recording : ILoggerFactory, ILogger
    {
        public ConcurrentQueue<(int Id, LogLevel Level)> Entries { get; } = new();

        public ILogger CreateLogger(string categoryName) => this;

        public void AddProvider(ILoggerProvider provider)
        {
        }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Enqueue((eventId.Id, logLevel));

        public void Dispose()
        {
        }
    }
}
