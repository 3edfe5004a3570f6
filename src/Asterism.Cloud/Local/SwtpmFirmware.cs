using System.Collections.Concurrent;
using Asterism.Tpm;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Cloud.Local;

/// <summary>
/// Firmware of the tpm variant: one swtpm per instance (state in INSTDIR/tpm). Before each boot it powers the TPM
/// on (a fresh swtpm process, or a reset of a running one: PCRs back to zero), extends the measured-boot events
/// into it as firmware would, disconnects (swtpm serves one client at a time) and hands the node
/// <c>--tpm 127.0.0.1:PORT</c>. After the node exited, crashed or not, the TPM itself is shut down cleanly
/// (TPM2_Shutdown, then swtpm's CMD_SHUTDOWN): the "chip" never loses power uncleanly, so the lockout counter stays 0.
/// boot-measurements.json is still written, documenting what was measured.
/// </summary>
public sealed class SwtpmFirmware(ILogger? logger = null) : IFirmware, IAsyncDisposable
{
    public const string TpmDirectoryName = "tpm";

    private readonly ConcurrentDictionary<string, SwtpmProcess> _tpms = new(StringComparer.Ordinal);
    private readonly ILogger _logger = logger ?? NullLogger.Instance;

    /// <summary>PIDs of the swtpm processes running now, by instance name.</summary>
    public IReadOnlyDictionary<string, int> ProcessIds() =>
        _tpms.Where(t => !t.Value.HasExited).ToDictionary(t => t.Key, t => t.Value.ProcessId, StringComparer.Ordinal);

    public async Task<FirmwareBoot> PrepareBootAsync(BootContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        var name = context.Instance.Name;
        var events = MeasuredBoot.ComputeEvents(context.Spec);
        MeasuredBoot.Write(Path.Combine(context.InstanceDir, MeasuredBoot.FileName), events);
        try
        {
            var tpm = await PowerOnAsync(name, Path.Combine(context.InstanceDir, TpmDirectoryName), cancellationToken).ConfigureAwait(false);
            await using (var client = await tpm.ConnectAsync(null, cancellationToken).ConfigureAwait(false))
            {
                foreach (var e in events)
                {
                    await client.PcrExtendAsync(e.Pcr, Convert.FromHexString(e.Digest), cancellationToken).ConfigureAwait(false);
                }
            }
            Log.TpmPoweredOn(_logger, name, tpm.ProcessId, tpm.SocketPath, events.Count);
            return new FirmwareBoot(events, ["--tpm", "unix:" + tpm.SocketPath]);
        }
        catch (TpmException e)
        {
            await PowerOffCoreAsync(name).ConfigureAwait(false);
            throw new CloudConfigException($"the TPM of {name} failed: {e.Message}");
        }
    }

    public async Task PowerOffAsync(BootContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        await PowerOffCoreAsync(context.Instance.Name).ConfigureAwait(false);
    }

    /// <summary>Shuts down every TPM still running (provider shutdown).</summary>
    public async ValueTask DisposeAsync()
    {
        await Task.WhenAll(_tpms.Keys.ToList().Select(PowerOffCoreAsync)).ConfigureAwait(false);
    }

    private async Task<SwtpmProcess> PowerOnAsync(string name, string stateDirectory, CancellationToken cancellationToken)
    {
        if (_tpms.TryGetValue(name, out var running) && !running.HasExited)
        {
            // Still powered (e.g. a boot that failed before the node started): a reset zeroes the PCRs.
            await running.ResetAsync(cancellationToken).ConfigureAwait(false);
            return running;
        }
        if (running is not null)
        {
            await running.DisposeAsync().ConfigureAwait(false);
        }
        var tpm = await SwtpmProcess.StartAsync(stateDirectory, cancellationToken).ConfigureAwait(false);
        _tpms[name] = tpm;
        return tpm;
    }

    private async Task PowerOffCoreAsync(string name)
    {
        if (!_tpms.TryRemove(name, out var tpm))
        {
            return;
        }
        var pid = tpm.ProcessId;
        try
        {
            await tpm.StopAsync(CancellationToken.None).ConfigureAwait(false);
            Log.TpmShutDown(_logger, name, pid);
        }
        catch (TpmException e)
        {
            // StopAsync killed it by PID after the orderly path failed.
            Log.PowerFailed(_logger, name, "tpm-shutdown", e.Message);
        }
        finally
        {
            await tpm.DisposeAsync().ConfigureAwait(false);
        }
    }
}
