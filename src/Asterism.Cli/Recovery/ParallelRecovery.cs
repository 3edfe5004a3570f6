using Asterism.Cli.Commands;
using Asterism.Cloud;
using Asterism.Protocol;

namespace Asterism.Cli.Recovery;

/// <summary>Bounds of one parallel recover run.</summary>
public sealed record ParallelRecoveryOptions
{
    /// <summary>How long a control plane that is still booting is waited for (<c>--boot-wait</c>).</summary>
    public TimeSpan BootWait { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How often a booting node's status is asked again.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>The per-node limit of one push (<c>--timeout</c>), named when a node does not answer within it.</summary>
    public TimeSpan PushTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How often a node that says it waits for its key, but whose recovery port did not answer, is tried again.</summary>
    public int UnansweredRetries { get; init; } = 3;

    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>What is written for each outcome: a real run's lines, or the dry run's (<see cref="RecoveryRehearsal"/>).</summary>
    public RecoveryLines Lines { get; init; } = RecoveryLines.Real;
}

/// <summary>The lines a parallel run writes; the dry run walks the same nodes the same way and says "would".</summary>
public sealed record RecoveryLines
{
    /// <summary>Those of <c>asterism recover</c>.</summary>
    public static readonly RecoveryLines Real = new();

    /// <summary>The stdout line of a node that was (or would be) pushed its key.</summary>
    public Func<InstanceInfo, PushResult, string> Succeeded { get; init; } = (_, _) => RecoverCommand.PushedLine;

    /// <summary>The progress text after a node's name when it succeeded.</summary>
    public Func<PushResult, string> SucceededProgress { get; init; } = pushed => $"key accepted ({pushed.Variant} attestation verified)";

    /// <summary>The stderr line of a node that failed.</summary>
    public Func<string, PushResult, string> Failed { get; init; } = RecoverCommand.FailureLine;

    /// <summary>The last stdout line when some nodes succeeded.</summary>
    public Func<int, string> Summary { get; init; } = RecoverCommand.RecoveredLine;

    /// <summary>The stdout line when no node needed a key and none failed.</summary>
    public string Nothing { get; init; } = RecoverCommand.NothingLine;
}

/// <summary>
/// Recovers every control plane of the provider's list at once. Each node's outcome is written the moment it is
/// known (one line per node), so a hung node never hides the others: a stopped control plane is named at once
/// (not recoverable now), a booting one is waited for up to <see cref="ParallelRecoveryOptions.BootWait"/>, a
/// waiting one is pushed its key, a booted one needs nothing; one whose status does not answer is pushed once at
/// once (whatever serves its recovery port must pass attestation) and otherwise waited for like a booting one. Exit 1
/// when any node failed or never left booting.
/// </summary>
/// <param name="push">One push to a named node's address (the aTLS call; <see cref="RecoveryPusher"/> in production).</param>
/// <param name="phaseOf">The node's boot phase from its status call, or null when the status port does not answer.</param>
public sealed class ParallelRecovery(
    Func<InstanceInfo, CancellationToken, Task<PushResult>> push,
    Func<string, CancellationToken, Task<string?>> phaseOf,
    ParallelRecoveryOptions options)
{
    /// <summary>The line naming a stopped control plane (stderr).</summary>
    public static string StoppedLine(string name) =>
        $"Warning: control plane {name} is stopped: not recoverable now; start it with 'asterism power start {name}', then run 'asterism recover' again";

    /// <summary>The line saying which booting nodes recover waits for (stderr).</summary>
    public static string BootingLine(string name, TimeSpan bound) =>
        $"Waiting for {name}: still booting (up to {Seconds(bound)}, --boot-wait)";

    public async Task<int> RunAsync(IReadOnlyList<InstanceInfo> instances, TextWriter stdout, TextWriter stderr, Progress progress, CancellationToken cancellationToken)
    {
        var controlPlanes = instances.Where(i => i.IsControlPlane).ToList();
        foreach (var stopped in controlPlanes.Where(i => !i.IsRunning))
        {
            WriteLine(stderr, StoppedLine(stopped.Name));
        }
        var targets = controlPlanes.Where(i => i.IsRunning).ToList();
        progress.Report($"Contacting {targets.Count} running control-plane nodes...");
        var start = options.Time.GetTimestamp();
        var results = await Task.WhenAll(targets.Select(async instance =>
        {
            var pushed = await RecoverOneAsync(instance, stderr, progress, cancellationToken).ConfigureAwait(false);
            // The node's line now, not after the slowest node.
            if (pushed.Outcome == PushOutcome.Recovered)
            {
                WriteLine(stdout, options.Lines.Succeeded(instance, pushed));
                progress.Report($"  {instance.Name} ({instance.Address}): {options.Lines.SucceededProgress(pushed)} after {options.Time.GetElapsedTime(start).TotalMilliseconds:0} ms");
            }
            else if (pushed.Outcome != PushOutcome.Unavailable)
            {
                WriteLine(stderr, options.Lines.Failed(instance.Name, pushed));
            }
            return pushed;
        })).ConfigureAwait(false);
        var recovered = results.Count(r => r.Outcome == PushOutcome.Recovered);
        var failed = results.Count(r => r.Outcome is not (PushOutcome.Recovered or PushOutcome.Unavailable));
        if (recovered > 0)
        {
            WriteLine(stdout, options.Lines.Summary(recovered));
        }
        else if (failed == 0)
        {
            WriteLine(stdout, options.Lines.Nothing);
        }
        return failed == 0 ? 0 : 1;
    }

    /// <summary>Waits while the node boots (bounded), then pushes when it waits for its key. Unavailable = nothing to do.</summary>
    private async Task<PushResult> RecoverOneAsync(InstanceInfo instance, TextWriter stderr, Progress progress, CancellationToken cancellationToken)
    {
        var endpoint = RecoveryPusher.RecoveryEndpoint(instance.Address);
        var start = options.Time.GetTimestamp();
        var announced = false;
        var probedSilentNode = false;
        while (true)
        {
            var phase = await phaseOf(instance.Address, cancellationToken).ConfigureAwait(false);
            if (phase == BootPhases.WaitingForKey)
            {
                if (announced)
                {
                    progress.Report($"  {instance.Name}: waits for its key now");
                }
                return await PushUntilAnsweredAsync(instance, progress, cancellationToken).ConfigureAwait(false);
            }
            if (phase == BootPhases.Booted)
            {
                progress.Report($"  {instance.Name}: booted, needs no key");
                return new PushResult(endpoint, PushOutcome.Unavailable, "booted", instance.Name);
            }
            if (phase is null && !probedSilentNode)
            {
                // No boot status, but something may serve the recovery port (a node whose status service hangs, or
                // a squatter on its address): one push lets attestation decide instead of waiting out --boot-wait.
                // Nothing listening there is "Unavailable": then it is most likely still starting; wait below.
                probedSilentNode = true;
                var probed = await push(instance, cancellationToken).ConfigureAwait(false);
                if (probed.Outcome != PushOutcome.Unavailable)
                {
                    return NameTimeout(probed);
                }
            }
            // Booting, or its status port is not up yet (the process just started): it may wait for its key in a moment.
            if (options.Time.GetElapsedTime(start) >= options.BootWait)
            {
                var what = phase is null ? "its boot status did not answer" : $"still {phase}";
                return new PushResult(endpoint, PushOutcome.Failed,
                    $"{what} after {Seconds(options.BootWait)} (--boot-wait); run 'asterism recover' again once it waits for its key", instance.Name);
            }
            if (!announced)
            {
                WriteLine(stderr, BootingLine(instance.Name, options.BootWait));
                announced = true;
            }
            await Task.Delay(options.PollInterval, options.Time, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// "Unavailable" normally means the node is not waiting (it booted meanwhile); but a node whose boot status says it
    /// waits for its key must have been pushed — a dropped connection there (a busy node, a handshake flood) is retried,
    /// and if it never answers the node is reported as failed, never silently counted as "nothing to recover".
    /// </summary>
    private async Task<PushResult> PushUntilAnsweredAsync(InstanceInfo instance, Progress progress, CancellationToken cancellationToken)
    {
        var pushed = await push(instance, cancellationToken).ConfigureAwait(false);
        for (var attempt = 1; pushed.Outcome == PushOutcome.Unavailable; attempt++)
        {
            if (await phaseOf(instance.Address, cancellationToken).ConfigureAwait(false) != BootPhases.WaitingForKey)
            {
                return pushed;
            }
            if (attempt > options.UnansweredRetries)
            {
                return pushed with
                {
                    Outcome = PushOutcome.Failed,
                    Detail = $"the node waits for its key, but its recovery port did not answer ({pushed.Detail}) after {options.UnansweredRetries + 1} attempts",
                    NodeName = instance.Name,
                };
            }
            progress.Report($"  {instance.Name}: waits for its key but its recovery port did not answer ({pushed.Detail}); trying again");
            await Task.Delay(TimeSpan.FromMilliseconds(250 * attempt), options.Time, cancellationToken).ConfigureAwait(false);
            pushed = await push(instance, cancellationToken).ConfigureAwait(false);
        }
        return NameTimeout(pushed);
    }

    /// <summary>A push that ran out of time says which limit and which option sets it.</summary>
    private PushResult NameTimeout(PushResult pushed) =>
        pushed.Outcome == PushOutcome.Failed && pushed.Detail == RecoveryPusher.TimedOutDetail
            ? pushed with { Detail = $"no answer within {Seconds(options.PushTimeout)} (--timeout)" }
            : pushed;

    private static void WriteLine(TextWriter writer, string line)
    {
        lock (writer)
        {
            writer.WriteLine(line);
            writer.Flush();
        }
    }

    private static string Seconds(TimeSpan t) => $"{t.TotalSeconds:0.#} s";
}
