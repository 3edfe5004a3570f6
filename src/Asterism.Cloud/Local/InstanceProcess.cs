using System.Diagnostics;
using System.Globalization;
using Asterism.Protocol;
using Microsoft.Extensions.Logging;

namespace Asterism.Cloud.Local;

/// <summary>
/// One instance: a node process with a serial console, measured before every start. Power operations are
/// serialised per instance; the exit watcher marks a process that died on its own as stopped (never restarts it).
/// </summary>
internal sealed class InstanceProcess
{
    // exec keeps the PID, so signals reach the node itself; both streams go to one O_APPEND file in order.
    private const string ConsoleWrapper = "exec \"$@\" </dev/null >>\"$0\" 2>&1";

    private readonly CloudSpec _spec;
    private readonly CloudWorkspace _workspace;
    private readonly IFirmware _firmware;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _powerLock = new(1, 1);
    private readonly Lock _stateLock = new();
    private Process? _process;
    // A node a previous provider started and this one took over: not our child, watched and signalled by identity.
    private ProcessIdentity? _adopted;
    private Task _exitHandled = Task.CompletedTask;
    private int _boots;
    private bool _shutDown;

    private readonly ProviderCa _ca;

    public InstanceProcess(CloudSpec spec, InstancePlan plan, CloudWorkspace workspace, IFirmware firmware, ProviderCa ca, TimeProvider time, ILogger logger)
    {
        _spec = spec;
        _ca = ca;
        Plan = plan;
        _workspace = workspace;
        _firmware = firmware;
        _time = time;
        _logger = logger;
    }

    public InstancePlan Plan { get; }

    public string InstanceDir => _workspace.InstanceDir(Plan.Name);

    public InstanceInfo Snapshot()
    {
        lock (_stateLock)
        {
            return new InstanceInfo
            {
                Name = Plan.Name,
                Role = Plan.Role.ToWire(),
                Address = Plan.Address,
                Power = (_process is null && _adopted is null ? PowerState.Stopped : PowerState.Running).ToWire(),
                Pid = _process?.Id ?? _adopted?.Pid,
                Boots = _boots,
            };
        }
    }

    /// <summary>Applies one power action; failures of this instance are reported in the result, not thrown.</summary>
    public async Task<PowerResult> ApplyAsync(PowerAction action, TimeSpan stopGrace, CancellationToken cancellationToken)
    {
        await _powerLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_shutDown && action is PowerAction.Start or PowerAction.Reboot)
            {
                return Result(action, false, "the provider is shutting down");
            }
            var changed = action switch
            {
                PowerAction.Start => await StartCoreAsync(cancellationToken).ConfigureAwait(false),
                PowerAction.Stop => await StopCoreAsync(stopGrace, kill: false).ConfigureAwait(false),
                PowerAction.Crash => await StopCoreAsync(stopGrace, kill: true).ConfigureAwait(false),
                PowerAction.Reboot => await StopCoreAsync(stopGrace, kill: false).ConfigureAwait(false)
                    | await StartCoreAsync(cancellationToken).ConfigureAwait(false),
                _ => throw new ArgumentOutOfRangeException(nameof(action)),
            };
            return Result(action, changed, null);
        }
        catch (Exception e) when (e is CloudConfigException or IOException or UnauthorizedAccessException or System.ComponentModel.Win32Exception or StateFs.StateFilesystemException)
        {
            Log.PowerFailed(_logger, Plan.Name, action.ToWire(), e.Message);
            return Result(action, false, e.Message);
        }
        finally
        {
            _powerLock.Release();
        }
    }

    /// <summary>Stops the instance for provider shutdown (SIGTERM, grace, SIGKILL).</summary>
    public async Task ShutdownAsync(TimeSpan stopGrace)
    {
        // Flag first (under the power lock) so a start racing with shutdown cannot leave a process behind.
        await _powerLock.WaitAsync().ConfigureAwait(false);
        _shutDown = true;
        _powerLock.Release();
        await ApplyAsync(PowerAction.Stop, stopGrace, CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>
    /// A node left running by a provider that died without stopping it (SIGKILL), found through node.pid: its PID,
    /// start time and boot number, and its command line naming this instance's node directory — a PID reused by another
    /// process is left alone. With <paramref name="adopt"/> (and firmware that still holds its state, e.g. its swtpm)
    /// the node is taken over as running; otherwise it is killed. Returns the node's PID when one was found.
    /// </summary>
    public async Task<int?> AdoptOrKillStaleAsync(bool adopt, CancellationToken cancellationToken)
    {
        var pidFile = PidFile;
        var found = ProcessIdentity.ReadPidFile(pidFile, out var extra);
        var context = new BootContext(_spec, Plan, InstanceDir, int.TryParse(extra, NumberStyles.None, CultureInfo.InvariantCulture, out var boot) ? boot : 1, _ca);
        if (found is not { } node || !node.CommandLine().Contains($" --node-dir {_workspace.NodeDir(Plan.Name)} ", StringComparison.Ordinal))
        {
            if (File.Exists(pidFile))
            {
                File.Delete(pidFile);
            }
            await _firmware.ReleaseStaleAsync(context, cancellationToken).ConfigureAwait(false);
            return null;
        }
        if (adopt && await _firmware.AdoptAsync(context, cancellationToken).ConfigureAwait(false))
        {
            lock (_stateLock)
            {
                _adopted = node;
                _boots = context.BootNumber;
                _exitHandled = WatchAdoptedExitAsync(node, context);
            }
            AppendConsole($"===== asterism-cloud: boot {context.BootNumber} of {Plan.Name} adopted by a restarted provider at {Now()} =====");
            Log.InstanceAdopted(_logger, Plan.Name, node.Pid, context.BootNumber);
            return node.Pid;
        }
        File.Delete(pidFile);
        node.Signal(ProcessIdentity.SigKill);
        AbortStateServers();
        await node.WaitGoneAsync(TimeSpan.FromSeconds(2), _time, cancellationToken).ConfigureAwait(false);
        await TryCleanMountsAsync().ConfigureAwait(false);
        await _firmware.ReleaseStaleAsync(context, cancellationToken).ConfigureAwait(false);
        Log.StaleKilled(_logger, Plan.Name, node.Pid);
        return node.Pid;
    }

    private string PidFile => Path.Combine(InstanceDir, "node.pid");

    private PowerResult Result(PowerAction action, bool changed, string? error) =>
        new() { Name = Plan.Name, Action = action.ToWire(), Changed = changed, Power = Snapshot().Power, Error = error };

    private async Task<bool> StartCoreAsync(CancellationToken cancellationToken)
    {
        Task previousExit;
        lock (_stateLock)
        {
            if (_process is not null || _adopted is not null)
            {
                return false;
            }
            previousExit = _exitHandled;
        }
        // The last boot's exit handling (its mount cleanup included) finishes before a new boot mounts anything.
        await previousExit.ConfigureAwait(false);
        OwnerOnly.CreateDirectory(InstanceDir);
        // A node that crashed under an earlier provider (or whose cleanup failed) may have left its state mounted.
        await CleanMountsAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            NodeProvisioning.Provision(_ca, _spec, Plan, _workspace.NodeDir(Plan.Name));
        }
        catch (InvalidDataException e)
        {
            throw new CloudConfigException($"cannot provision {Plan.Name}: {e.Message}");
        }
        var context = new BootContext(_spec, Plan, InstanceDir, _boots + 1, _ca);
        var boot = await _firmware.PrepareBootAsync(context, cancellationToken).ConfigureAwait(false);

        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false, WorkingDirectory = InstanceDir };
        foreach (var arg in new[] { "-c", ConsoleWrapper, _workspace.ConsoleLogPath(Plan.Name) }
                     .Concat(_spec.NodeCommand)
                     .Concat(_spec.NodeArgs)
                     .Concat(
                     [
                         "--name", Plan.Name,
                         "--role", Plan.Role.ToWire(),
                         "--address", Plan.Address,
                         "--disk", _workspace.DiskPath(Plan.Name),
                         "--node-dir", _workspace.NodeDir(Plan.Name),
                         "--metadata", $"http://{_spec.ParsedSubnet().ProviderAddress}:{Ports.Metadata}",
                         "--variant", _spec.Variant,
                     ])
                     .Concat(boot.ExtraNodeArgs))
        {
            psi.ArgumentList.Add(arg);
        }
        AppendConsole($"===== asterism-cloud: boot {context.BootNumber} of {Plan.Name} at {Now()} ({_spec.Variant}, {boot.Events.Count} events measured) =====");
        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        process.Start();
        lock (_stateLock)
        {
            _process = process;
            _boots = context.BootNumber;
            _exitHandled = WatchExitAsync(process, context);
        }
        // PID, start time and boot number: a restarted provider adopts exactly this process, never a reused PID.
        var identity = ProcessIdentity.Of(process.Id) ?? new ProcessIdentity(process.Id, 0);
        OwnerOnly.WriteAllText(PidFile, identity.ToPidFileLine(context.BootNumber.ToString(CultureInfo.InvariantCulture)));
        Log.InstanceStarted(_logger, Plan.Name, process.Id, context.BootNumber);
        return true;
    }

    private async Task<bool> StopCoreAsync(TimeSpan grace, bool kill)
    {
        Process? process;
        ProcessIdentity? adopted;
        Task exited;
        lock (_stateLock)
        {
            process = _process;
            adopted = _adopted;
            exited = _exitHandled;
        }
        if (process is null && adopted is null)
        {
            return false;
        }
        var pid = process?.Id ?? adopted!.Value.Pid;
        void Send(int signal)
        {
            if (process is not null)
            {
                ProcessSignals.Send(pid, signal);
            }
            else
            {
                adopted!.Value.Signal(signal);
            }
        }
        if (kill)
        {
            Send(ProcessSignals.SigKill);
            AbortStateServers();
        }
        else
        {
            Send(ProcessSignals.SigTerm);
            if (await Task.WhenAny(exited, Task.Delay(grace, _time)).ConfigureAwait(false) != exited)
            {
                Log.StopEscalated(_logger, Plan.Name, pid, grace.TotalSeconds);
                Send(ProcessSignals.SigKill);
                AbortStateServers();
            }
        }
        await exited.ConfigureAwait(false);
        return true;
    }

    private async Task WatchExitAsync(Process process, BootContext context)
    {
        // Let StartCoreAsync publish the process before the watcher can clear it.
        await Task.Yield();
        await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
        var code = process.ExitCode;
        var pid = process.Id;
        lock (_stateLock)
        {
            if (ReferenceEquals(_process, process))
            {
                _process = null;
            }
        }
        process.Dispose();
        try
        {
            File.Delete(PidFile);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.PowerFailed(_logger, Plan.Name, "pid-file", e.Message);
        }
        AppendConsole($"===== asterism-cloud: {Plan.Name} stopped at {Now()} (exit code {code}) =====");
        Log.InstanceExited(_logger, Plan.Name, pid, code);
        // A node that was killed could not unmount: its ext4 mount, loop device and dead FUSE connection go now.
        await TryCleanMountsAsync().ConfigureAwait(false);
        try
        {
            await _firmware.PowerOffAsync(context, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException)
        {
            Log.PowerFailed(_logger, Plan.Name, "power-off", e.Message);
        }
    }

    /// <summary>An adopted node is not our child (no exit event): polled by identity until it is gone.</summary>
    private async Task WatchAdoptedExitAsync(ProcessIdentity node, BootContext context)
    {
        await Task.Yield();
        while (!await node.WaitGoneAsync(TimeSpan.FromSeconds(1), _time, CancellationToken.None).ConfigureAwait(false))
        {
        }
        lock (_stateLock)
        {
            if (_adopted == node)
            {
                _adopted = null;
            }
        }
        try
        {
            File.Delete(PidFile);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.PowerFailed(_logger, Plan.Name, "pid-file", e.Message);
        }
        AppendConsole($"===== asterism-cloud: {Plan.Name} stopped at {Now()} (adopted; exit code unknown) =====");
        Log.InstanceExited(_logger, Plan.Name, node.Pid, -1);
        await TryCleanMountsAsync().ConfigureAwait(false);
        try
        {
            await _firmware.PowerOffAsync(context, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException)
        {
            Log.PowerFailed(_logger, Plan.Name, "power-off", e.Message);
        }
    }

    /// <summary>
    /// After SIGKILL: the node's FUSE server dies with it, but a node thread blocked in fsync on that same server would
    /// keep the process from dying; aborting the connection (or killing its fuse2fs) ends that wait.
    /// </summary>
    private void AbortStateServers()
    {
        try
        {
            var actions = NodeMounts.AbortServers(_workspace, Plan.Name);
            if (actions.Count > 0)
            {
                Log.StateMountsCleaned(_logger, Plan.Name, string.Join("; ", actions));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.PowerFailed(_logger, Plan.Name, "abort-state-servers", e.Message);
        }
    }

    /// <summary>Removes the state mounts a stopped node left (see <see cref="NodeMounts"/>); throws when that fails.</summary>
    private async Task CleanMountsAsync(CancellationToken cancellationToken)
    {
        var actions = await NodeMounts.CleanAsync(_workspace, Plan.Name, cancellationToken).ConfigureAwait(false);
        if (actions.Count > 0)
        {
            AppendConsole($"===== asterism-cloud: cleaned {Plan.Name}'s state mounts: {string.Join("; ", actions)} =====");
            Log.StateMountsCleaned(_logger, Plan.Name, string.Join("; ", actions));
        }
    }

    /// <summary>The exit path's cleanup: a failure is logged, and the next start tries again (and refuses to boot if it fails).</summary>
    private async Task TryCleanMountsAsync()
    {
        try
        {
            await CleanMountsAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or UnauthorizedAccessException or StateFs.StateFilesystemException)
        {
            Log.PowerFailed(_logger, Plan.Name, "state-mount-cleanup", e.Message);
        }
    }

    private void AppendConsole(string line)
    {
        try
        {
            File.AppendAllText(_workspace.ConsoleLogPath(Plan.Name), line + "\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.PowerFailed(_logger, Plan.Name, "console", e.Message);
        }
    }

    private string Now() => _time.GetUtcNow().ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);
}
