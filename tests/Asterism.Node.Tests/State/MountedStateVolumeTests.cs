using Asterism.Attestation.Simulated;
using Asterism.Crypto;
using Asterism.Node.Boot;
using Asterism.Node.State;
using Asterism.Node.Tests.Fakes;
using Asterism.Node.Unlock;
using Asterism.StateFs;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Node.Tests.State;

/// <summary>
/// The real state filesystem under the node's boot code: first boot formats ext4 and writes the node state as
/// files, a reboot's key race mounts it again and reads them back. Root: FUSE + loop; otherwise fuse2fs (Debian
/// fuse3, fuse2fs, e2fsprogs; test.sh installs them).
/// </summary>
public sealed class MountedStateVolumeTests : IDisposable
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(2);
    private readonly TestDisk _disk = TestDisk.CreateFormatted();

    public void Dispose()
    {
        StateMountCleanup.CleanAsync(Options().RuntimeDirectory, Options().StateDirectory, CancellationToken.None).GetAwaiter().GetResult();
        _disk.Dispose();
    }

    [Fact]
    public async Task FirstBootThenReboot_StateSurvivesAsFiles_WrongSecretLeavesNothingMounted()
    {
        var options = Options();
        var volume = new MountedStateVolume(options);
        var setup = new FirstBootSetup(_disk.Disk, volume, _disk.InitialPassphrase, options, new SimulatedPcrBank(), NullLoggerFactory.Instance);
        using (var keys = FirstBootKeys())
        {
            var result = await setup.ApplyAsync(keys, "test", CancellationToken.None);
            await using var first = result!.Directory;
            Assert.Contains(MountTable.Read(), m => m.MountPoint == options.StateDirectory);
            first.Write("workload/before-reboot", "kept"u8);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(options.StateDirectory));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(first.PathOf(NodeStateDirectory.NodeStateFile)));
        }
        Assert.Empty(MountTable.Under(options.StateDirectory));
        Assert.Empty(MountTable.Under(options.RuntimeDirectory));
        Assert.False(File.Exists(Path.Combine(options.StateDirectory, NodeStateDirectory.NodeStateFile)));

        var race = new KeyRace(volume);
        Assert.Equal(KeyVerdict.MeasurementSecretRejected, await race.OfferAsync(_disk.RightDiskKeyForeignSecret(), CancellationToken.None));
        Assert.Empty(MountTable.Under(options.StateDirectory));
        Assert.Empty(MountTable.Under(options.RuntimeDirectory));
        Assert.Equal(KeyVerdict.DiskKeyRejected, await race.OfferAsync(TestDisk.ForeignKeys(_disk.Uuid), CancellationToken.None));

        Assert.Equal(KeyVerdict.Accepted, await race.OfferAsync(_disk.RightKeys(), CancellationToken.None));
        var win = await race.Winner;
        await using (win.Directory)
        {
            win.Keys.Dispose();
            Assert.Equal(NodeRole.Worker, win.State.Role);
            Assert.Equal("kept"u8.ToArray(), win.Directory.ReadOrNull("workload/before-reboot"));
        }
        Assert.Empty(MountTable.Under(options.StateDirectory));
    }

    private NodeOptions Options() => _disk.Options(Interval, Interval, NodeRole.Worker);

    private FirstBootKeys FirstBootKeys() => new()
    {
        DiskKey = KeyDerivation.DeriveDiskKey(_disk.Master, _disk.Uuid),
        MeasurementSecret = KeyDerivation.DeriveMeasurementSecret(_disk.Master),
        MeasurementSalt = _disk.MeasurementSalt,
    };
}
