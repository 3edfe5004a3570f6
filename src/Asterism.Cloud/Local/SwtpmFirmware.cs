using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Asterism.Attestation.Identities;
using Asterism.Tpm;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Cloud.Local;

/// <summary>
/// Firmware of the tpm variant: one swtpm per instance (state in INSTDIR/tpm, 0700, Unix sockets inside it).
/// On an instance's first power-on the provider, acting as the TPM manufacturer, runs swtpm_setup so the TPM gets
/// an EK certificate from the provider's manufacturer CA (WORKSPACE/.asterism/cloud/tpm-manufacturer/), then sets
/// the endorsement hierarchy auth to a random value kept 0600 in the node directory and the lockout auth to a random
/// value it forgets. Before each boot it powers the TPM on (a fresh swtpm, or a reset: PCRs back to zero), sets a
/// random platform auth for this boot (so nobody can clear the TPM or change its seeds), extends the measured-boot
/// events, and — when the node directory has no valid identity certificate for the TPM's AK — certifies the AK
/// through <see cref="TpmRegistrar"/> (EK certificate check, credential activation) with the provider CA. It then
/// disconnects (swtpm serves one client at a time) and hands the node <c>--tpm unix:INSTDIR/tpm/tpm.sock</c>. After
/// the node exited the TPM is shut down cleanly (TPM2_Shutdown, then CMD_SHUTDOWN), so the lockout counter stays 0.
/// </summary>
public sealed class SwtpmFirmware : IFirmware, IAsyncDisposable
{
    public const string TpmDirectoryName = "tpm";

    /// <summary>The manufacturer CA's directory inside the provider's cloud directory.</summary>
    public const string ManufacturerDirectoryName = "tpm-manufacturer";

    /// <summary>Written into the TPM state directory once manufacturing finished (EK certificate and auth values set).</summary>
    public const string ManufacturedMarker = "manufactured";

    private readonly ConcurrentDictionary<string, SwtpmProcess> _tpms = new(StringComparer.Ordinal);
    // swtpms a previous provider started for nodes this one adopted: stopped by identity, not as our children.
    private readonly ConcurrentDictionary<string, StaleTpm> _adopted = new(StringComparer.Ordinal);
    private readonly ILogger _logger;
    private readonly SwtpmManufacturer _manufacturer;
    private readonly X509Certificate2Collection _trustedManufacturers;
    private readonly TpmEkType _endorsementKey;

    /// <param name="cloudDir">The provider's own directory (WORKSPACE/.asterism/cloud); the manufacturer CA lives below it.</param>
    /// <param name="logger">Firmware log.</param>
    /// <param name="endorsementKey">
    /// Which EK the manufacturer certifies in new TPMs: RSA-2048 (swtpm_setup's) or only the ECC P-256 one, as some
    /// hardware TPMs ship; the registrar takes whichever certificate the TPM holds.
    /// </param>
    public SwtpmFirmware(string cloudDir, ILogger? logger = null, TpmEkType endorsementKey = TpmEkType.Rsa)
    {
        _endorsementKey = endorsementKey;
        ArgumentException.ThrowIfNullOrEmpty(cloudDir);
        _logger = logger ?? NullLogger.Instance;
        _manufacturer = SwtpmManufacturer.LoadOrCreate(Path.Combine(cloudDir, ManufacturerDirectoryName));
        // The registrar is configured from the CA file as it would be with a TPM vendor's EK CA.
        _trustedManufacturers = TpmRegistrar.LoadManufacturerCas(_manufacturer.CertificatePath);
    }

    /// <summary>The manufacturer CA certificate file (PEM).</summary>
    public string ManufacturerCertificatePath => _manufacturer.CertificatePath;

    /// <summary>PIDs of the swtpm processes running now, by instance name.</summary>
    public IReadOnlyDictionary<string, int> ProcessIds() =>
        _tpms.Where(t => !t.Value.HasExited).ToDictionary(t => t.Key, t => t.Value.ProcessId, StringComparer.Ordinal);

    public async Task<FirmwareBoot> PrepareBootAsync(BootContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        var name = context.Instance.Name;
        var events = MeasuredBoot.ComputeEvents(context);
        MeasuredBoot.Write(Path.Combine(context.InstanceDir, MeasuredBoot.FileName), events);
        var nodeDir = Path.Combine(context.InstanceDir, "node");
        OwnerOnly.CreateDirectory(nodeDir);
        try
        {
            var tpm = await PowerOnAsync(name, Path.Combine(context.InstanceDir, TpmDirectoryName), nodeDir, cancellationToken).ConfigureAwait(false);
            await using (var client = await tpm.ConnectAsync(null, cancellationToken).ConfigureAwait(false))
            {
                // Firmware owns the platform hierarchy; a value nobody keeps locks it until the next power-on.
                await client.HierarchyChangeAuthAsync(TpmHierarchy.Platform, default, RandomNumberGenerator.GetBytes(32), cancellationToken).ConfigureAwait(false);
                foreach (var e in events)
                {
                    await client.PcrExtendAsync(e.Pcr, Convert.FromHexString(e.Digest), cancellationToken).ConfigureAwait(false);
                }
                if (context.Ca is { } ca)
                {
                    await CertifyAttestationKeyAsync(client, ca, context.Instance, nodeDir, cancellationToken).ConfigureAwait(false);
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
        catch (CloudConfigException)
        {
            await PowerOffCoreAsync(name).ConfigureAwait(false);
            throw;
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
        await Task.WhenAll(_tpms.Keys.Concat(_adopted.Keys).Distinct().ToList().Select(PowerOffCoreAsync)).ConfigureAwait(false);
    }

    /// <summary>The node runs on with the swtpm a previous provider started: take that swtpm over, or say the node cannot go on.</summary>
    public Task<bool> AdoptAsync(BootContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (FindStale(Path.Combine(context.InstanceDir, TpmDirectoryName)) is not { } stale)
        {
            return Task.FromResult(false);
        }
        _adopted[context.Instance.Name] = stale;
        return Task.FromResult(true);
    }

    /// <summary>An swtpm a previous provider left running for a node that is not adopted: shut down cleanly (or killed).</summary>
    public async Task ReleaseStaleAsync(BootContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (FindStale(Path.Combine(context.InstanceDir, TpmDirectoryName)) is { } stale)
        {
            await StopStaleAsync(context.Instance.Name, stale).ConfigureAwait(false);
        }
    }

    /// <summary>A running swtpm of this state directory: swtpm.pid names a live process whose command line uses this directory.</summary>
    internal static StaleTpm? FindStale(string stateDirectory)
    {
        if (ProcessIdentity.ReadPidFile(Path.Combine(stateDirectory, "swtpm.pid"), out _) is not { } tpm)
        {
            return null;
        }
        string[] args;
        try
        {
            args = File.ReadAllText($"/proc/{tpm.Pid}/cmdline").Split('\0');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        var server = Array.IndexOf(args, "--server");
        var socket = server >= 0 && server + 1 < args.Length && args[server + 1].StartsWith("type=unixio,path=", StringComparison.Ordinal)
            ? args[server + 1]["type=unixio,path=".Length..] : null;
        return socket is not null && args.Contains($"dir={stateDirectory},mode=0600", StringComparer.Ordinal) ? new StaleTpm(tpm, socket) : null;
    }

    private async Task StopStaleAsync(string name, StaleTpm stale)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            // Orderly, as for our own swtpms: TPM2_Shutdown keeps the lockout counter where it is.
            await using (var client = await TpmClient.ConnectSwtpmAsync(stale.Socket, null, timeout.Token).ConfigureAwait(false))
            {
                await client.ShutdownAsync(TpmStartupType.Clear, timeout.Token).ConfigureAwait(false);
            }
            await SwtpmControl.ShutdownAsync(SwtpmControl.ControlPathOf(stale.Socket), timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TpmException or IOException or OperationCanceledException)
        {
            Log.PowerFailed(_logger, name, "stale-tpm-shutdown", e.Message);
        }
        if (!await stale.Process.WaitGoneAsync(TimeSpan.FromSeconds(5), TimeProvider.System, CancellationToken.None).ConfigureAwait(false))
        {
            stale.Process.Signal(ProcessIdentity.SigKill);
            await stale.Process.WaitGoneAsync(TimeSpan.FromSeconds(5), TimeProvider.System, CancellationToken.None).ConfigureAwait(false);
        }
        Log.StaleTpmStopped(_logger, name, stale.Process.Pid);
    }

    internal sealed record StaleTpm(ProcessIdentity Process, string Socket);

    private async Task CertifyAttestationKeyAsync(TpmClient client, ProviderCa ca, InstancePlan plan, string nodeDir, CancellationToken cancellationToken)
    {
        var auth = TpmEndorsementAuth.Load(nodeDir) ?? throw new CloudConfigException($"the endorsement auth of {plan.Name}'s TPM is missing");
        try
        {
            var outcome = await AttestationKeyEnrollment.EnrollAsync(client, auth, _trustedManufacturers, ca, plan, nodeDir, cancellationToken).ConfigureAwait(false);
            if (outcome.Certified)
            {
                Log.TpmAkCertified(_logger, plan.Name, outcome.AkName, outcome.Elapsed.TotalMilliseconds);
            }
        }
        catch (EnrollmentRefusedException e)
        {
            Log.TpmAkRefused(_logger, plan.Name, e.Status.ToString(), e.Reason);
            throw;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(auth);
        }
    }

    /// <summary>
    /// First power-on (no marker, or the node lost its endorsement auth): a fresh TPM from the manufacturer, with
    /// the endorsement auth handed to the node and the lockout auth forgotten. A half-done run is redone from scratch.
    /// </summary>
    private async Task ManufactureIfNeededAsync(string name, string stateDirectory, string nodeDir, CancellationToken cancellationToken)
    {
        if (File.Exists(Path.Combine(stateDirectory, ManufacturedMarker)) && TpmEndorsementAuth.Load(nodeDir) is not null)
        {
            return;
        }
        var watch = Stopwatch.StartNew();
        if (Directory.Exists(stateDirectory))
        {
            Directory.Delete(stateDirectory, recursive: true);
        }
        await _manufacturer.ManufactureAsync(stateDirectory, _endorsementKey, cancellationToken).ConfigureAwait(false);
        var setup = watch.Elapsed;
        var auth = TpmEndorsementAuth.Generate();
        try
        {
            await using var tpm = await SwtpmProcess.StartAsync(stateDirectory, cancellationToken).ConfigureAwait(false);
            await using (var client = await tpm.ConnectAsync(null, cancellationToken).ConfigureAwait(false))
            {
                TpmEndorsementAuth.Save(nodeDir, auth);
                await client.HierarchyChangeAuthAsync(TpmHierarchy.Endorsement, default, auth, cancellationToken).ConfigureAwait(false);
                await client.HierarchyChangeAuthAsync(TpmHierarchy.Lockout, default, RandomNumberGenerator.GetBytes(32), cancellationToken).ConfigureAwait(false);
            }
            await tpm.StopAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(auth);
        }
        File.WriteAllText(Path.Combine(stateDirectory, ManufacturedMarker), "swtpm_setup with the provider's manufacturer CA; endorsement and lockout auth set\n");
        File.SetUnixFileMode(Path.Combine(stateDirectory, ManufacturedMarker), UnixFileMode.UserRead | UnixFileMode.UserWrite);
        Log.TpmManufactured(_logger, name, setup.TotalMilliseconds, watch.Elapsed.TotalMilliseconds);
    }

    private async Task<SwtpmProcess> PowerOnAsync(string name, string stateDirectory, string nodeDir, CancellationToken cancellationToken)
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
        if (_adopted.TryRemove(name, out var adopted))
        {
            await StopStaleAsync(name, adopted).ConfigureAwait(false);
        }
        else if (FindStale(stateDirectory) is { } stale)
        {
            // Left by a provider that was killed: it holds the sockets and the state's lock.
            await StopStaleAsync(name, stale).ConfigureAwait(false);
        }
        await ManufactureIfNeededAsync(name, stateDirectory, nodeDir, cancellationToken).ConfigureAwait(false);
        // swtpm keeps the TPM's state (its seeds) here: the owner's alone, whatever the umask.
        OwnerOnly.CreateDirectory(stateDirectory);
        var tpm = await SwtpmProcess.StartAsync(stateDirectory, cancellationToken).ConfigureAwait(false);
        _tpms[name] = tpm;
        return tpm;
    }

    private async Task PowerOffCoreAsync(string name)
    {
        if (_adopted.TryRemove(name, out var adopted))
        {
            await StopStaleAsync(name, adopted).ConfigureAwait(false);
        }
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
