using System.Net.Sockets;
using Asterism.Node.Tests.Fakes;
using Asterism.Node.Tickets;
using Grpc.Core;

namespace Asterism.Node.Tests.Tickets;

/// <summary>
/// The retry schedule of join and rejoin rounds on a fake clock: while the control plane is on its way back (connection
/// refused, Unavailable "no quorum") a node retries after 250 ms, 500 ms, 1 s … up to the interval, restarting at 250 ms
/// only when the answers change; any other failure waits the full interval; the number of rounds stays bounded.
/// </summary>
public sealed class TicketRoundsBackoffTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private static readonly string[] ControlPlanes = ["127.0.1.11:30090", "127.0.1.12:30090", "127.0.1.13:30090"];

    private static RoundOutcome Round(params EndpointFailure[] kinds) =>
        new(kinds.Select((k, i) => (ControlPlanes[i], k)).ToList());

    [Fact]
    public void Next_SameWaitingAnswers_DoublesFrom250msUpToTheInterval()
    {
        var schedule = new RetrySchedule(Interval, () => 0.5);
        var refused = Round(EndpointFailure.NotListening, EndpointFailure.NotListening, EndpointFailure.NotListening);

        var waits = Enumerable.Range(0, 6).Select(_ => schedule.Next(refused).TotalMilliseconds).ToList();

        // Each step from the upper half of 250, 500, 1000 ms (jitter 0.5 → three quarters); the cap itself exact.
        Assert.Equal([187.5, 375, 750, 2000, 2000, 2000], waits);
    }

    [Theory]
    [InlineData(0.0, 125)]
    [InlineData(0.999999, 250)]
    public void Next_Jitter_StaysInTheUpperHalfOfTheStep(double jitter, double expectedMs)
    {
        var schedule = new RetrySchedule(Interval, () => jitter);
        Assert.Equal(expectedMs, schedule.Next(Round(EndpointFailure.Unavailable)).TotalMilliseconds, 0.01);
    }

    [Fact]
    public void Next_AnswersChange_RestartsAt250ms()
    {
        var schedule = new RetrySchedule(Interval, () => 0.5);
        var refused = Round(EndpointFailure.NotListening, EndpointFailure.NotListening, EndpointFailure.NotListening);
        for (var i = 0; i < 5; i++)
        {
            schedule.Next(refused);
        }
        Assert.Equal(Interval, schedule.Next(refused));

        // control-plane-0 booted and answers "no quorum": the quorum is near.
        var firstUp = Round(EndpointFailure.Unavailable, EndpointFailure.NotListening, EndpointFailure.NotListening);
        Assert.Equal(187.5, schedule.Next(firstUp).TotalMilliseconds);
        Assert.Equal(375, schedule.Next(firstUp).TotalMilliseconds);
    }

    [Theory]
    [InlineData(EndpointFailure.Other, EndpointFailure.Other, EndpointFailure.Other)]
    [InlineData(EndpointFailure.Unavailable, EndpointFailure.Other, EndpointFailure.NotListening)]
    public void Next_AnyOtherFailure_FullInterval(params EndpointFailure[] kinds)
    {
        var schedule = new RetrySchedule(Interval, () => 0.5);
        Assert.Equal(Interval, schedule.Next(Round(kinds)));
        Assert.Equal(Interval, schedule.Next(Round(kinds)));
        Assert.Equal(Interval, schedule.Next(RoundOutcome.Other));
    }

    [Fact]
    public void Classify_RefusedUnavailableDeniedTimedOut_OnlyTheFirstTwoAreWaiting()
    {
        var refused = new RpcException(new Status(StatusCode.Unavailable, "Error connecting to subchannel.",
            new HttpRequestException("Connection refused", new SocketException((int)SocketError.ConnectionRefused))));
        Assert.Equal(EndpointFailure.NotListening, TicketRounds.Classify(refused));
        Assert.Equal(EndpointFailure.Unavailable, TicketRounds.Classify(new RpcException(new Status(StatusCode.Unavailable, "control plane has no quorum"))));
        Assert.Equal(EndpointFailure.Other, TicketRounds.Classify(new RpcException(new Status(StatusCode.PermissionDenied, "the node registry refuses this node"))));
        Assert.Equal(EndpointFailure.Other, TicketRounds.Classify(new RpcException(new Status(StatusCode.DeadlineExceeded, ""))));
        Assert.Equal(EndpointFailure.Other, TicketRounds.Classify(new InvalidDataException("rejoin ticket has keys of the wrong length")));
    }

    /// <summary>
    /// A whole outage: the control planes are down for 58.5 s (connection refused), one boots and answers "no quorum"
    /// for 1.6 s, then the quorum is back. With quick retries the node, having seen the answer change at 59.3 s, asks
    /// again after 0.19, 0.38, 0.75 s and has its keys 0.5 s after the quorum; with the fixed interval only at 62 s
    /// (1.9 s late). The rounds over the whole outage stay near one per interval.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task RunAsync_OutageThenNoQuorumThenQuorum_QuickAfterwardsAndBoundedRounds(bool quickRetries)
    {
        var clock = new TestClock();
        var start = clock.GetUtcNow();
        var controlPlaneUp = TimeSpan.FromSeconds(58.5);
        var quorum = TimeSpan.FromSeconds(60.1);
        var requester = new ScriptedRequester(() => clock.GetUtcNow() - start, controlPlaneUp, quorum);
        var rounds = new TicketRounds(FakeEndpoints.Of(ControlPlanes), Interval, Timeout, clock, quickRetries, () => 0.5);

        var run = rounds.RunAsync(requester, CancellationToken.None);
        while (!run.IsCompleted)
        {
            var due = await clock.NextTimerAsync(run);
            if (due is { } wait && wait != Timeout)
            {
                clock.Advance(wait);
            }
        }
        await run;

        var late = requester.SettledAt!.Value - quorum;
        if (quickRetries)
        {
            Assert.InRange(late, TimeSpan.Zero, TimeSpan.FromSeconds(0.6));
        }
        else
        {
            Assert.InRange(late, TimeSpan.FromSeconds(1.8), Interval);
        }
        // Over 62 s a fixed 2 s interval makes 32 rounds; quick retries add at most 4 per change of the answers
        // (the outage starts, a control plane answers "no quorum").
        Assert.InRange(requester.Rounds, 30, quickRetries ? 32 + 2 * 4 : 32);
    }

    /// <summary>Rounds of three endpoints answering by the (fake) time since the start.</summary>
    private sealed class ScriptedRequester(Func<TimeSpan> elapsed, TimeSpan controlPlaneUp, TimeSpan quorum) : ITicketRequester<string>
    {
        public bool IsSettled => SettledAt is not null;

        public TimeSpan? SettledAt { get; private set; }

        public int Rounds { get; private set; }

        public Task<string> RequestAsync(string endpoint, CancellationToken cancellationToken)
        {
            var now = elapsed();
            if (now >= quorum)
            {
                return Task.FromResult("keys");
            }
            var error = now >= controlPlaneUp && endpoint == ControlPlanes[0]
                ? new Status(StatusCode.Unavailable, "control plane has no quorum")
                : new Status(StatusCode.Unavailable, "Error connecting to subchannel.", new SocketException((int)SocketError.ConnectionRefused));
            return Task.FromException<string>(new RpcException(error));
        }

        public Task<string?> ApplyAsync(string endpoint, string ticket, CancellationToken cancellationToken)
        {
            SettledAt = elapsed();
            return Task.FromResult<string?>(null);
        }

        public void LookupFailed(string error) => throw new InvalidOperationException(error);

        public void EndpointsListed(IReadOnlyList<string> endpoints) => Rounds++;

        public void EndpointFailed(string endpoint, string error)
        {
        }

        public void RoundFailed()
        {
        }
    }
}
