using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Asterism.Attestation.Identities;
using Asterism.Cloud.Local;
using Asterism.Tpm;

namespace Asterism.Cloud.Tests;

/// <summary>The tpm variant's firmware with real swtpm processes: measured boot, reset on reboot, clean power-off, no leftovers.</summary>
public class SwtpmFirmwareTests
{
    private static async Task<IReadOnlyDictionary<int, byte[]>> ReadPcrsAsync(string socket, params int[] pcrs)
    {
        await using var client = await TpmClient.ConnectSwtpmAsync(socket, null, CancellationToken.None);
        return await client.PcrReadAsync(pcrs, CancellationToken.None);
    }

    private static string TpmSocket(string console)
    {
        var at = console.LastIndexOf("--tpm unix:", StringComparison.Ordinal);
        Assert.True(at >= 0, console);
        return string.Concat(console[(at + "--tpm unix:".Length)..].TakeWhile(c => !char.IsWhiteSpace(c)));
    }

    [Fact]
    public async Task Boot_TpmVariant_ExtendsBootEventsFromZeroAndResetsOnRebootAndCrash()
    {
        await using var cloud = TestCloud.Create(controlPlanes: 1, workers: 1, variant: CloudSpec.TpmVariant);
        var firmware = new SwtpmFirmware(cloud.Workspace.CloudDir);
        await cloud.StartProviderAsync(firmware: firmware);
        var name = cloud.Cp(0);
        await cloud.WaitForConsoleAsync(name, "listening", 1);
        var tpms = firmware.ProcessIds();
        Assert.Equal(2, tpms.Count);
        foreach (var pid in tpms.Values)
        {
            cloud.Track(pid);
            Assert.True(Procs.IsAlive(pid));
        }
        Assert.True(Directory.Exists(Path.Combine(cloud.Workspace.InstanceDir(name), "tpm")));

        // PCR 4 and 9 hold exactly the events written to boot-measurements.json, extended once from zero.
        var expected = MeasuredBoot.ExpectedPcrs(MeasuredBoot.Read(cloud.Workspace.BootMeasurementsPath(name)).Events);
        Assert.Equal(MeasuredBoot.ExpectedPcrs(MeasuredBoot.ComputeEvents(cloud.Spec)), expected);
        var socket = TpmSocket(cloud.Console(name));
        var pcrs = await ReadPcrsAsync(socket, 4, 9, 15);
        Assert.Equal(expected[4], pcrs[4]);
        Assert.Equal(expected[9], pcrs[9]);
        Assert.Equal(new byte[32], pcrs[15]);

        // What a node does after receiving its keys; a reboot must bring PCR 15 back to zero.
        await using (var client = await TpmClient.ConnectSwtpmAsync(socket, null, CancellationToken.None))
        {
            await client.PcrEventAsync(15, RandomNumberGenerator.GetBytes(32), CancellationToken.None);
        }
        await cloud.Provider!.PowerAsync(PowerAction.Reboot, [name], CancellationToken.None);
        await cloud.WaitForConsoleAsync(name, "listening", 2);
        Assert.False(Procs.IsAlive(tpms[name]));
        var rebooted = firmware.ProcessIds()[name];
        cloud.Track(rebooted);
        pcrs = await ReadPcrsAsync(TpmSocket(cloud.Console(name)), 4, 9, 15);
        Assert.Equal(expected[4], pcrs[4]);
        Assert.Equal(expected[9], pcrs[9]);
        Assert.Equal(new byte[32], pcrs[15]);

        // A crashed node still gets a clean TPM power-off: the swtpm process is gone, by PID.
        await cloud.Provider.PowerAsync(PowerAction.Crash, [name], CancellationToken.None);
        Assert.False(Procs.IsAlive(rebooted));
        Assert.False(firmware.ProcessIds().ContainsKey(name));

        // Provider shutdown stops the remaining TPM too.
        var workerTpm = firmware.ProcessIds()[cloud.Worker(0)];
        await cloud.Provider.StopAsync();
        Assert.False(Procs.IsAlive(workerTpm));
        Assert.Empty(firmware.ProcessIds());
    }

    [Fact]
    public async Task Start_TpmVariantWithoutOverride_ProviderRunsSwtpmAndLeavesNothingRunning()
    {
        await using var cloud = TestCloud.Create(controlPlanes: 1, variant: CloudSpec.TpmVariant);
        await cloud.StartProviderAsync();
        var name = cloud.Cp(0);
        await cloud.WaitForConsoleAsync(name, "listening", 1);
        var pidFile = Path.Combine(cloud.Workspace.InstanceDir(name), "tpm", "swtpm.pid");
        var pid = int.Parse(File.ReadAllText(pidFile).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        cloud.Track(pid);
        Assert.True(Procs.IsAlive(pid));

        await cloud.Provider!.StopAsync();

        Assert.False(Procs.IsAlive(pid));
    }

    [Fact]
    public async Task Boot_TpmVariant_ManufacturesTpmLocksHierarchiesAndCertifiesAkAfterActivation()
    {
        await using var cloud = TestCloud.Create(controlPlanes: 1, variant: CloudSpec.TpmVariant);
        var firmware = new SwtpmFirmware(cloud.Workspace.CloudDir);
        await cloud.StartProviderAsync(firmware: firmware);
        var name = cloud.Cp(0);
        await cloud.WaitForConsoleAsync(name, "listening", 1);
        cloud.Track(firmware.ProcessIds()[name]);
        var nodeDir = cloud.Workspace.NodeDir(name);
        const UnixFileMode rw = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        const UnixFileMode rwx = rw | UnixFileMode.UserExecute;

        // Manufacturer CA key and the endorsement auth: owner-only files in owner-only directories.
        var manufacturerDir = Path.Combine(cloud.Workspace.CloudDir, SwtpmFirmware.ManufacturerDirectoryName);
        Assert.Equal(rwx, File.GetUnixFileMode(manufacturerDir));
        Assert.All(Directory.GetFiles(manufacturerDir, "*.key"), f => Assert.Equal(rw, File.GetUnixFileMode(f)));
        Assert.Equal(rwx, File.GetUnixFileMode(Path.Combine(cloud.Workspace.InstanceDir(name), SwtpmFirmware.TpmDirectoryName)));
        Assert.Equal(rwx, File.GetUnixFileMode(nodeDir));
        Assert.Equal(rw, File.GetUnixFileMode(Path.Combine(nodeDir, TpmEndorsementAuth.FileName)));
        var auth = TpmEndorsementAuth.Load(nodeDir)!;

        byte[] akSpki, ekCertificate;
        await using (var client = await TpmClient.ConnectSwtpmAsync(TpmSocket(cloud.Console(name)), null, CancellationToken.None))
        {
            // Without the endorsement auth nobody derives the AK; the platform hierarchy is locked for this boot.
            await Assert.ThrowsAsync<TpmException>(() => TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, default, CancellationToken.None));
            await Assert.ThrowsAsync<TpmException>(() => client.HierarchyChangeAuthAsync(TpmHierarchy.Platform, default, new byte[32], CancellationToken.None));
            await Assert.ThrowsAsync<TpmException>(() => client.HierarchyChangeAuthAsync(TpmHierarchy.Lockout, default, new byte[32], CancellationToken.None));
            await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, auth, CancellationToken.None);
            akSpki = ak.PublicKey.ExportSubjectPublicKeyInfo();
            ekCertificate = await client.NvReadAsync(TpmRegistrar.RsaEkCertificateIndex, default, CancellationToken.None);
        }

        // The EK certificate chains to the provider's manufacturer CA; the identity certificate names this instance
        // and certifies exactly the TPM's AK.
        using (var ek = X509CertificateLoader.LoadCertificate(ekCertificate))
        using (var chain = new X509Chain())
        {
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(TpmRegistrar.LoadManufacturerCas(firmware.ManufacturerCertificatePath));
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            Assert.True(chain.Build(ek));
        }
        var identityPath = IdentityFiles.CertificatePath(nodeDir);
        using (var ca = ProviderCa.Load(cloud.Workspace.CloudDir))
        using (var authority = ca.CreateAuthority())
        {
            var check = authority.Verify(IdentityFiles.ReadCertificate(identityPath), akSpki, DateTimeOffset.UtcNow);
            Assert.True(check.Identity is not null, check.Error);
            Assert.Equal(name, check.Identity.Name);
        }

        // A reboot keeps the TPM (no re-manufacturing), its auth and the identity: nothing is reissued.
        var identityBefore = await File.ReadAllBytesAsync(identityPath);
        await cloud.Provider!.PowerAsync(PowerAction.Reboot, [name], CancellationToken.None);
        await cloud.WaitForConsoleAsync(name, "listening", 2);
        cloud.Track(firmware.ProcessIds()[name]);
        Assert.Equal(identityBefore, await File.ReadAllBytesAsync(identityPath));
        Assert.Equal(auth, TpmEndorsementAuth.Load(nodeDir));
    }

    [Fact]
    public async Task Boot_TpmVariantWithOnlyEccEk_CertifiesAkThroughEccCredentialActivation()
    {
        await using var cloud = TestCloud.Create(controlPlanes: 1, variant: CloudSpec.TpmVariant);
        var firmware = new SwtpmFirmware(cloud.Workspace.CloudDir, endorsementKey: TpmEkType.Ecc);
        await cloud.StartProviderAsync(firmware: firmware);
        var name = cloud.Cp(0);
        await cloud.WaitForConsoleAsync(name, "listening", 1);
        cloud.Track(firmware.ProcessIds()[name]);
        var nodeDir = cloud.Workspace.NodeDir(name);
        var auth = TpmEndorsementAuth.Load(nodeDir)!;

        byte[] akSpki;
        await using (var client = await TpmClient.ConnectSwtpmAsync(TpmSocket(cloud.Console(name)), null, CancellationToken.None))
        {
            // The TPM has no RSA EK certificate, so the identity can only have come through the ECC EK.
            await Assert.ThrowsAsync<TpmException>(() => client.NvReadAsync(TpmRegistrar.RsaEkCertificateIndex, default, CancellationToken.None));
            using var ek = X509CertificateLoader.LoadCertificate(await client.NvReadAsync(TpmRegistrar.EccEkCertificateIndex, default, CancellationToken.None));
            Assert.NotNull(ek.GetECDiffieHellmanPublicKey());
            await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, auth, CancellationToken.None);
            akSpki = ak.PublicKey.ExportSubjectPublicKeyInfo();
        }
        using var ca = ProviderCa.Load(cloud.Workspace.CloudDir);
        using var authority = ca.CreateAuthority();
        var check = authority.Verify(IdentityFiles.ReadCertificate(IdentityFiles.CertificatePath(nodeDir)), akSpki, DateTimeOffset.UtcNow);
        Assert.True(check.Identity is not null, check.Error);
        Assert.Equal(name, check.Identity.Name);
    }
}
