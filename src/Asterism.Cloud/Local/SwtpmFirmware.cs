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
    private readonly ILogger _logger;
    private readonly SwtpmManufacturer _manufacturer;
    private readonly X509Certificate2Collection _trustedManufacturers;

    /// <param name="cloudDir">The provider's own directory (WORKSPACE/.asterism/cloud); the manufacturer CA lives below it.</param>
    /// <param name="logger">Firmware log.</param>
    public SwtpmFirmware(string cloudDir, ILogger? logger = null)
    {
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
        await Task.WhenAll(_tpms.Keys.ToList().Select(PowerOffCoreAsync)).ConfigureAwait(false);
    }

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
        await _manufacturer.ManufactureAsync(stateDirectory, cancellationToken).ConfigureAwait(false);
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
        await ManufactureIfNeededAsync(name, stateDirectory, nodeDir, cancellationToken).ConfigureAwait(false);
        // swtpm keeps the TPM's state (its seeds) here: the owner's alone, whatever the umask.
        OwnerOnly.CreateDirectory(stateDirectory);
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
