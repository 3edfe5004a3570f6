using Asterism.Cli.Commands;
using Asterism.Cli.Recovery;
using Asterism.Cloud;
using Asterism.Protocol;
using Microsoft.Extensions.Time.Testing;

namespace Asterism.Cli.Tests;

/// <summary>
/// Parallel recover on a fake clock with fake nodes: what the operator reads while nodes boot, hang or are stopped
/// (issue 13 item 6). The real aTLS push and status calls are covered by the end-to-end tests.
/// </summary>
public sealed class ParallelRecoveryTests
{
    private readonly FakeTimeProvider _time = new();
    private readonly StringWriter _stdout = new();
    private readonly StringWriter _stderr = new();
    private readonly Dictionary<string, Func<string?>> _phases = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Func<CancellationToken, Task<PushResult>>> _pushes = new(StringComparer.Ordinal);

    private static InstanceInfo Cp(int i, bool running = true) => new()
    {
        Name = $"cp{i}",
        Role = CloudNames.ControlPlane,
        Address = $"127.9.9.{10 + i}",
        Power = running ? CloudNames.Running : CloudNames.Stopped,
    };

    private static InstanceInfo Worker(bool running) => new()
    {
        Name = "w0",
        Role = CloudNames.Worker,
        Address = "127.9.9.20",
        Power = running ? CloudNames.Running : CloudNames.Stopped,
    };

    private static PushResult Recovered(InstanceInfo node) => new(RecoveryPusher.RecoveryEndpoint(node.Address), PushOutcome.Recovered, "", node.Name, "simulated");

    private Task<int> Run(params InstanceInfo[] instances)
    {
        var recovery = new ParallelRecovery(
            (node, ct) => _pushes[node.Name](ct),
            (address, _) => Task.FromResult(_phases[address]()),
            new ParallelRecoveryOptions { Time = _time, BootWait = TimeSpan.FromSeconds(60), PollInterval = TimeSpan.FromMilliseconds(500), PushTimeout = TimeSpan.FromSeconds(30) });
        return Task.Run(() => recovery.RunAsync(instances, _stdout, _stderr, new Progress(TextWriter.Null, false), CancellationToken.None));
    }

    private string Out => Read(_stdout);

    private string Err => Read(_stderr);

    private static string Read(StringWriter writer)
    {
        lock (writer)
        {
            return writer.ToString();
        }
    }

    [Fact]
    public async Task RunAsync_NodeStillBooting_SaysSoWaitsAndPushesOnceItWaits()
    {
        var node = Cp(0);
        var waiting = false;
        _phases[node.Address] = () => Volatile.Read(ref waiting) ? BootPhases.WaitingForKey : BootPhases.Booting;
        _pushes[node.Name] = _ => Task.FromResult(Recovered(node));

        var run = Run(node);
        await Until(() => Err.Contains(ParallelRecovery.BootingLine(node.Name, TimeSpan.FromSeconds(60)), StringComparison.Ordinal), "the booting line");
        Assert.False(run.IsCompleted);
        Assert.DoesNotContain(RecoverCommand.NothingLine, Out, StringComparison.Ordinal);

        Volatile.Write(ref waiting, true);
        var code = await AdvanceUntil(run, TimeSpan.FromMilliseconds(500));

        Assert.Equal(0, code);
        Assert.Equal([RecoverCommand.PushedLine, RecoverCommand.RecoveredLine(1)], Lines(Out));
    }

    [Fact]
    public async Task RunAsync_NoStatusAnswerYet_CountsAsBooting()
    {
        var node = Cp(0);
        var answers = 0;
        // A process the provider just started: its status port is not up for the first few polls.
        _phases[node.Address] = () => Interlocked.Increment(ref answers) < 4 ? null : BootPhases.WaitingForKey;
        // Its recovery port is not up either until it waits (recover tries it once while the status is silent).
        _pushes[node.Name] = _ => Task.FromResult(Volatile.Read(ref answers) < 4
            ? new PushResult(RecoveryPusher.RecoveryEndpoint(node.Address), PushOutcome.Unavailable, "connection refused", node.Name)
            : Recovered(node));

        var code = await AdvanceUntil(Run(node), TimeSpan.FromMilliseconds(500));

        Assert.Equal(0, code);
        Assert.Contains(ParallelRecovery.BootingLine(node.Name, TimeSpan.FromSeconds(60)), Err, StringComparison.Ordinal);
        Assert.Equal([RecoverCommand.PushedLine, RecoverCommand.RecoveredLine(1)], Lines(Out));
    }

    [Fact]
    public async Task RunAsync_StatusSilentButRecoveryPortServed_PushedAtOnce_RefusalNamedWithoutWaitingOutTheBound()
    {
        // A frozen node's address with a squatter on its recovery port: the status never answers, but whatever
        // answers on :9999 is attested right away (and refused), instead of recover waiting out --boot-wait.
        var silent = Cp(0);
        _phases[silent.Address] = () => null;
        var pushes = 0;
        _pushes[silent.Name] = _ =>
        {
            Interlocked.Increment(ref pushes);
            return Task.FromResult(new PushResult(RecoveryPusher.RecoveryEndpoint(silent.Address), PushOutcome.Refused, "attestation failed: forged key", silent.Name));
        };

        var code = await Run(silent);

        Assert.Equal(1, code);
        Assert.Equal(1, pushes);
        var line = Assert.Single(Lines(Err), l => l.StartsWith("Error:", StringComparison.Ordinal));
        Assert.Contains("attestation failed", line, StringComparison.Ordinal);
        Assert.DoesNotContain(RecoverCommand.PushedLine, Lines(Out));
        Assert.Equal(_time.Start, _time.GetUtcNow());
    }

    [Fact]
    public async Task RunAsync_NodeStillBootingAfterBound_NamedExit1()
    {
        var booting = Cp(0);
        var waiting = Cp(1);
        _phases[booting.Address] = () => BootPhases.Booting;
        _phases[waiting.Address] = () => BootPhases.WaitingForKey;
        _pushes[waiting.Name] = _ => Task.FromResult(Recovered(waiting));

        var code = await AdvanceUntil(Run(booting, waiting), TimeSpan.FromSeconds(1));

        Assert.Equal(1, code);
        Assert.Equal([RecoverCommand.PushedLine, RecoverCommand.RecoveredLine(1)], Lines(Out));
        var line = Assert.Single(Lines(Err), l => l.StartsWith("Error:", StringComparison.Ordinal));
        Assert.Contains("node cp0", line, StringComparison.Ordinal);
        Assert.Contains("still booting after 60 s (--boot-wait)", line, StringComparison.Ordinal);
        Assert.True(_time.GetUtcNow() - _time.Start >= TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task RunAsync_StoppedControlPlane_NamedWithHowToStartIt()
    {
        var booted = Cp(0);
        var stopped = Cp(1, running: false);
        _phases[booted.Address] = () => BootPhases.Booted;

        var code = await Run(booted, stopped, Worker(running: false));

        Assert.Equal(0, code);
        Assert.Equal([RecoverCommand.NothingLine], Lines(Out));
        Assert.Equal([ParallelRecovery.StoppedLine("cp1")], Lines(Err));
        Assert.Contains("asterism power start cp1", Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RunAsync_OneNodeHangs_OthersReportedAtOnceHungOneFailsAfterItsTimeout()
    {
        var refusing = Cp(0);
        var hung = Cp(1);
        var fine = Cp(2);
        foreach (var node in new[] { refusing, hung, fine })
        {
            _phases[node.Address] = () => BootPhases.WaitingForKey;
        }
        _pushes[refusing.Name] = _ => Task.FromResult(new PushResult(RecoveryPusher.RecoveryEndpoint(refusing.Address), PushOutcome.AttestationFailed, "untrusted measurement", refusing.Name));
        _pushes[fine.Name] = _ => Task.FromResult(Recovered(fine));
        // The real pusher ends a call that gets no answer after its own --timeout, as this does on the fake clock.
        _pushes[hung.Name] = async ct =>
        {
            await Task.Delay(TimeSpan.FromSeconds(30), _time, ct);
            return new PushResult(RecoveryPusher.RecoveryEndpoint(hung.Address), PushOutcome.Failed, RecoveryPusher.TimedOutDetail, hung.Name);
        };

        var run = Run(refusing, hung, fine);
        await Until(() => Err.Contains("node cp0", StringComparison.Ordinal) && Out.Contains(RecoverCommand.PushedLine, StringComparison.Ordinal), "cp0's and cp2's lines");
        Assert.False(run.IsCompleted);
        Assert.DoesNotContain("cp1", Err, StringComparison.Ordinal);

        var code = await AdvanceUntil(run, TimeSpan.FromSeconds(1));

        Assert.Equal(1, code);
        Assert.Equal([RecoverCommand.PushedLine, RecoverCommand.RecoveredLine(1)], Lines(Out));
        var errors = Lines(Err);
        Assert.Equal(2, errors.Count);
        Assert.Contains("node cp0", errors[0], StringComparison.Ordinal);
        Assert.Contains("attestation failed", errors[0], StringComparison.Ordinal);
        Assert.Contains("node cp1", errors[1], StringComparison.Ordinal);
        Assert.Contains("no answer within 30 s (--timeout)", errors[1], StringComparison.Ordinal);
    }

    private static List<string> Lines(string text) => [.. text.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Length > 0)];

    /// <summary>Moves the fake clock on in steps until the run ends (bounded: 10 fake minutes).</summary>
    private async Task<int> AdvanceUntil(Task<int> run, TimeSpan step)
    {
        for (var i = 0; !run.IsCompleted; i++)
        {
            Assert.True(_time.GetUtcNow() - _time.Start < TimeSpan.FromMinutes(10), "recover did not finish within 10 fake minutes");
            // Let the run reach its next timer before the clock moves, so no step is skipped.
            await Task.WhenAny(run, Task.Delay(TimeSpan.FromMilliseconds(5)));
            _time.Advance(step);
        }
        return await run;
    }

    private static async Task Until(Func<bool> condition, string what)
    {
        // Polls; the deadline is a hang detector, generous for a machine at load 100 (the clock under test is fake).
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(TimeSpan.FromMilliseconds(5));
        }
    }
}
