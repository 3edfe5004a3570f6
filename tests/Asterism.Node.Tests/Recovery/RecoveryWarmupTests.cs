using System.Collections.Concurrent;
using Asterism.Crypto;
using Asterism.Node.Recovery;
using Asterism.Node.Tests.Fakes;
using Asterism.Node.Unlock;
using Asterism.Protocol.Recover;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Tests.Recovery;

/// <summary>
/// The node's own warm-up probe is answered like any probe but kept out of the operator's log; nobody else can pass
/// for it, so an attacker's probe is always logged as a recover call. The last three tests come from the attacker
/// review of the first warm-up (token in the probe message, so "Received recover call" waited for the first message):
/// a silent caller stayed out of the log while it held its call, and the node's own probe was logged as a recover
/// call when the race was decided or the probe cancelled. The token now travels in the request headers.
/// </summary>
public sealed class RecoveryWarmupTests : IDisposable
{
    private readonly TestDisk _disk = TestDisk.CreateInitialized();
    private readonly TestClock _clock = new();
    private readonly RecordingLoggers _log = new();
    private readonly RecoveryWarmup _warmup = new();
    private readonly KeyRace _race;
    private readonly RecoveryServer _server;

    public RecoveryWarmupTests()
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
    public async Task Recover_OwnWarmupProbe_NamesDisk_LoggedAtDebugOnly_NodeKeepsWaiting()
    {
        var named = await ProbeAsync(_warmup.Token.ToArray());

        Assert.Equal(_disk.Uuid, named.DiskUuid);
        Assert.False(_race.IsDecided);
        Assert.Contains(_log.Entries, e => e.Id == 1208 && e.Level == LogLevel.Debug);
        Assert.DoesNotContain(_log.Entries, e => e.Id == 1202);
        Assert.DoesNotContain(_log.Entries, e => e.Level >= LogLevel.Information && e.Id is 1202 or 1207);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(31)]
    [InlineData(32)]
    [InlineData(33)]
    public async Task Recover_ProbeWithAnotherToken_LoggedAsAReceivedCallAndAProbe(int length)
    {
        // An attacker who wants its probe out of the log can only guess the token: any other value is an ordinary
        // probe, logged at information level like the operator's dry run.
        var guess = new byte[length];
        if (length > 0)
        {
            _warmup.Token.Span[..Math.Min(length, 32)].CopyTo(guess);
            guess[^1] ^= 1;
        }

        var named = await ProbeAsync(guess);

        Assert.Equal(_disk.Uuid, named.DiskUuid);
        Assert.Contains(_log.Entries, e => e.Id == 1202 && e.Level == LogLevel.Information);
        Assert.Contains(_log.Entries, e => e.Id == 1207 && e.Level == LogLevel.Information);
        Assert.DoesNotContain(_log.Entries, e => e.Id == 1208);
    }

    [Fact]
    public async Task Recover_WarmupTokenOnAServerOfAnotherProcess_LoggedAsAReceivedCall()
    {
        // The token is per process: one seen elsewhere (another node's, an earlier boot's) hides nothing here.
        var elsewhere = new RecoveryWarmup();

        await ProbeAsync(elsewhere.Token.ToArray());

        Assert.Contains(_log.Entries, e => e.Id == 1202);
        Assert.DoesNotContain(_log.Entries, e => e.Id == 1208);
    }

    [Fact]
    public void Tokens_TwoWarmups_DifferAndAre32Bytes()
    {
        var other = new RecoveryWarmup();

        Assert.Equal(32, _warmup.Token.Length);
        Assert.False(_warmup.Token.Span.SequenceEqual(other.Token.Span));
        Assert.True(_warmup.IsOwn(Headers(_warmup.Token.ToArray())));
        Assert.False(_warmup.IsOwn(Headers(other.Token.ToArray())));
        Assert.False(_warmup.IsOwn(Headers([])));
        Assert.False(_warmup.IsOwn([]));
        // The same bytes as a text header (another name) are not the binary header.
        Assert.False(_warmup.IsOwn(new Metadata { { "asterism-warmup-token", Convert.ToBase64String(_warmup.Token.Span) } }));
    }

    [Fact]
    public async Task OfferAsync_RandomKeyAsTheWarmupOffersIt_RefusedAndTheRightKeyStillWins()
    {
        // What the warm-up's second step does: a random key runs the keyslot check and is refused; nothing changes.
        var before = _disk.ImageHash();
        var random = new ReceivedKeys(SecretBytes.CopyOf(System.Security.Cryptography.RandomNumberGenerator.GetBytes(KeyDerivation.KeyLength)),
            SecretBytes.CopyOf(System.Security.Cryptography.RandomNumberGenerator.GetBytes(KeyDerivation.KeyLength)), "warm-up");

        Assert.Equal(KeyVerdict.DiskKeyRejected, await _race.OfferAsync(random, CancellationToken.None));
        Assert.False(_race.IsDecided);
        Assert.Equal(before, _disk.ImageHash());
        Assert.Equal(KeyVerdict.Accepted, await _race.OfferAsync(_disk.RightKeys("recovery"), CancellationToken.None));
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

    private static Metadata Headers(byte[] token) => new() { { RecoveryWarmup.TokenHeader, token } };

    private async Task<RecoverResponse> ProbeAsync(byte[] token)
    {
        var requests = new FakeRequestStream<RecoverMessage>();
        var responses = new FakeResponseStream<RecoverResponse>();
        var context = new FakeCallContext();
        context.RequestHeaders.Add(RecoveryWarmup.TokenHeader, token);
        var call = _server.Recover(requests, responses, context);
        requests.Send(new RecoverMessage { Probe = new Probe() });
        var named = await responses.NextAsync();
        await call.WaitAsync(TestLimits.Hang);
        return named;
    }

    /// <summary>Keeps every log entry's event id and level.</summary>
    private sealed class RecordingLoggers : ILoggerFactory, ILoggerProvider, ILogger
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
