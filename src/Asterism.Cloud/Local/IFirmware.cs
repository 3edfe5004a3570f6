namespace Asterism.Cloud.Local;

/// <summary>What the firmware knows about the instance it is about to boot.</summary>
/// <summary>One boot of one instance; <paramref name="Ca"/> certifies attestation keys (the tpm firmware issues AK identities).</summary>
public sealed record BootContext(CloudSpec Spec, InstancePlan Instance, string InstanceDir, int BootNumber, ProviderCa? Ca = null);

/// <summary>
/// The provider's firmware role (ARCHITECTURE §7): measures the boot before the node process starts and may
/// add arguments (the tpm variant will start the instance's swtpm, extend it and add `--tpm 127.0.0.1:PORT`).
/// </summary>
public interface IFirmware
{
    /// <summary>Measures this boot; returns the events measured and any extra node arguments.</summary>
    Task<FirmwareBoot> PrepareBootAsync(BootContext context, CancellationToken cancellationToken);

    /// <summary>Called after the node process has exited (clean stop or crash), e.g. to power down a TPM.</summary>
    Task PowerOffAsync(BootContext context, CancellationToken cancellationToken);

    /// <summary>
    /// A restarted provider takes over a node a previous provider left running: true when this firmware's part of it
    /// (e.g. its swtpm) still runs and is now this provider's to power off; false means the node cannot go on.
    /// </summary>
    Task<bool> AdoptAsync(BootContext context, CancellationToken cancellationToken);

    /// <summary>Stops what a previous provider left running for an instance that is not adopted (e.g. its swtpm).</summary>
    Task ReleaseStaleAsync(BootContext context, CancellationToken cancellationToken);
}

public sealed record FirmwareBoot(IReadOnlyList<BootEvent> Events, IReadOnlyList<string> ExtraNodeArgs);

/// <summary>
/// Firmware of the simulated variant: writes boot-measurements.json into the instance directory; the node reads
/// it (from its working directory) and extends its in-memory PCR bank with the events first thing.
/// </summary>
public sealed class SimulatedFirmware : IFirmware
{
    public Task<FirmwareBoot> PrepareBootAsync(BootContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        var events = MeasuredBoot.ComputeEvents(context);
        MeasuredBoot.Write(Path.Combine(context.InstanceDir, MeasuredBoot.FileName), events);
        return Task.FromResult(new FirmwareBoot(events, []));
    }

    public Task PowerOffAsync(BootContext context, CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>The simulated PCR bank lives in the node process: nothing else to take over.</summary>
    public Task<bool> AdoptAsync(BootContext context, CancellationToken cancellationToken) => Task.FromResult(true);

    public Task ReleaseStaleAsync(BootContext context, CancellationToken cancellationToken) => Task.CompletedTask;
}
