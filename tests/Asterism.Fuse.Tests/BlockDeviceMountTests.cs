using Asterism.Disk;
using Asterism.StateFs;

namespace Asterism.Fuse.Tests;

public sealed class BlockDeviceMountTests
{
    [RootFact]
    public async Task Mount_RandomUnalignedWritesFromSeveralThreads_ReadBackAndOnImageAfterFsync()
    {
        await using var volume = TestVolume.Create();
        var mountDir = volume.NewDirectory("block");
        var device = Luks2PayloadDevice.Open(volume.ImagePath, volume.Passphrase)!;
        var model = new byte[device.Length];
        device.Read(0, model);
        var fs = new BlockDeviceFileSystem(device);
        using (var mount = FuseMount.Mount(mountDir, fs))
        {
            var file = Path.Combine(mountDir, "disk");
            Assert.Equal(device.Length, new FileInfo(file).Length);
            // Four writers, each in its own quarter, so the expected bytes do not depend on the interleaving; offsets
            // and lengths are unaligned to 4096 and 512, and some writes are larger than one FUSE request.
            var quarter = model.Length / 4;
            await Task.WhenAll(Enumerable.Range(0, 4).Select(w => Task.Run(() =>
            {
                var rng = new Random(1000 + w);
                using var handle = File.OpenHandle(file, FileMode.Open, FileAccess.ReadWrite);
                for (var i = 0; i < 60; i++)
                {
                    var length = rng.Next(1, i % 10 == 0 ? 3 * 1024 * 1024 : 20000);
                    var offset = (w * quarter) + rng.Next(0, quarter - length);
                    var data = new byte[length];
                    rng.NextBytes(data);
                    RandomAccess.Write(handle, data, offset);
                    data.CopyTo(model, offset);
                }
                RandomAccess.FlushToDisk(handle);
            })));
            Assert.True(fs.FsyncCount >= 4);
            var back = await File.ReadAllBytesAsync(file);
            Assert.True(back.AsSpan().SequenceEqual(model), "read back through FUSE differs from what was written");
        }
        device.Dispose();
        Assert.True(volume.DecryptPayload().AsSpan().SequenceEqual(model), "the image decrypted offline differs from what was written");
        Assert.Equal(string.Empty, await Tool.LeftoversAsync(volume.Directory));
    }

    [RootFact]
    public async Task Mount_AsRoot_OtherUserIsRefusedEvenWhereDirectoriesAllowIt()
    {
        await using var volume = TestVolume.Create();
        var mountDir = Path.Combine(volume.Directory, "open");
        Directory.CreateDirectory(mountDir);
        File.SetUnixFileMode(mountDir, (UnixFileMode)0x1ED);
        using var device = new MemoryBlockDevice(1 << 20);
        using (FuseMount.Mount(mountDir, new BlockDeviceFileSystem(device)))
        {
            var read = await OtherUser.RunAsync("dd", $"if={mountDir}/disk", "of=/dev/null", "bs=4096", "count=1");
            Assert.NotEqual(0, read.ExitCode);
            Assert.Contains("Permission denied", read.Stderr, StringComparison.Ordinal);
            var list = await OtherUser.RunAsync("ls", mountDir);
            Assert.NotEqual(0, list.ExitCode);
            Assert.Contains("user_id=0", MountTable.Under(mountDir).Single().SuperOptions, StringComparison.Ordinal);
            Assert.DoesNotContain("allow_other", MountTable.Under(mountDir).Single().SuperOptions, StringComparison.Ordinal);
        }
    }

    [RootFact]
    public async Task Mount_AsNobodyThroughFusermount_ServesNobodyAndRefusesRoot()
    {
        await using var volume = TestVolume.Create(forNobody: true);
        var mountDir = Path.Combine(volume.Directory, "open");
        Directory.CreateDirectory(mountDir);
        File.SetUnixFileMode(mountDir, (UnixFileMode)0x1ED);
        OtherUser.Chown(mountDir);
        await using var host = await HostProcess.StartAsync(true, "block", volume.ImagePath, volume.PassphrasePath, mountDir);
        var entry = MountTable.Under(mountDir).Single();
        Assert.Equal("fuse.asterism", entry.FileSystemType);
        Assert.Contains("user_id=65534", entry.SuperOptions, StringComparison.Ordinal);

        var write = await OtherUser.RunAsync("dd", "if=/dev/urandom", $"of={host.Ready}", "bs=1000", "count=77", "seek=3", "conv=notrunc,fsync");
        Assert.True(write.ExitCode == 0, write.Stderr);
        var read = await OtherUser.RunAsync("sha256sum", host.Ready);
        Assert.True(read.ExitCode == 0, read.Stderr);

        // Root bypasses file modes, so only the missing allow_other can refuse it here.
        var asRoot = Assert.ThrowsAny<UnauthorizedAccessException>(() => File.ReadAllBytes(host.Ready));
        Assert.Contains("denied", asRoot.Message, StringComparison.OrdinalIgnoreCase);

        Assert.Equal(0, await host.StopAsync());
        Assert.Empty(MountTable.Under(mountDir));
    }

    [RootFact]
    public async Task AbortServers_FusectlMounted_AbortsOnlyTheConnectionThroughFusectl()
    {
        Assert.True(MountTable.Read().Any(m => m.FileSystemType == "fusectl"), "fusectl is not mounted at /sys/fs/fuse/connections");
        await using var volume = TestVolume.Create();
        var mountDir = volume.NewDirectory("run");
        await using var host = await HostProcess.StartAsync(false, "block", volume.ImagePath, volume.PassphrasePath, mountDir);
        var entry = MountTable.Under(mountDir).Single();

        var actions = StateMountCleanup.AbortServers(volume.Runtime);

        Assert.Contains(actions, a => a.Contains(mountDir, StringComparison.Ordinal) && a.Contains("fusectl", StringComparison.Ordinal));
        // The server still runs, yet the connection is gone: the kernel answers ENOTCONN without asking it.
        var refused = Assert.ThrowsAny<IOException>(() => File.ReadAllBytes(host.Ready));
        Assert.Contains("not connected", refused.Message, StringComparison.OrdinalIgnoreCase);
        // Aborted, not unmounted: MNT_FORCE would have taken the (unbusy) mount away as well.
        Assert.Equal(entry, MountTable.Under(mountDir).Single());
        await host.KillAsync();
        await StateMountCleanup.CleanAsync(volume.Runtime, volume.StateDir, CancellationToken.None);
        Assert.Equal(string.Empty, await Tool.LeftoversAsync(volume.Directory));
    }

    [RootFact]
    public async Task Fsync_ThenServerKilled_AcknowledgedDataIsOnTheImageAndCleanupLeavesNothing()
    {
        await using var volume = TestVolume.Create();
        var mountDir = volume.NewDirectory("run");
        await using var host = await HostProcess.StartAsync(false, "block", volume.ImagePath, volume.PassphrasePath, mountDir);
        var data = new byte[300_001];
        Random.Shared.NextBytes(data);
        const long offset = 5 * 1024 * 1024 + 777;
        using (var handle = File.OpenHandle(host.Ready, FileMode.Open, FileAccess.ReadWrite))
        {
            RandomAccess.Write(handle, data, offset);
            RandomAccess.FlushToDisk(handle);
        }
        await host.KillAsync();
        Assert.NotEmpty(MountTable.Under(mountDir));

        var actions = await StateMountCleanup.CleanAsync(volume.Runtime, volume.StateDir, CancellationToken.None);
        Assert.Contains(actions, a => a.Contains(mountDir, StringComparison.Ordinal));
        Assert.Equal(string.Empty, await Tool.LeftoversAsync(volume.Directory));
        Assert.Empty(await StateMountCleanup.CleanAsync(volume.Runtime, volume.StateDir, CancellationToken.None));

        Assert.True(volume.DecryptPayload().AsSpan((int)offset, data.Length).SequenceEqual(data));
    }

    [Fact]
    public void Constructor_NameWithSlashOrEmpty_Throws()
    {
        using var device = new MemoryBlockDevice(4096);
        Assert.Throws<ArgumentException>(() => new BlockDeviceFileSystem(device, "a/b"));
        Assert.Throws<ArgumentException>(() => new BlockDeviceFileSystem(device, string.Empty));
        Assert.Throws<ArgumentException>(() => new BlockDeviceFileSystem(device, ".."));
    }

    [Fact]
    public void Write_PastTheEnd_IsNoSpaceAndSizeCannotChange()
    {
        using var device = new MemoryBlockDevice(8192);
        var fs = new BlockDeviceFileSystem(device);
        Assert.Equal(28, fs.Write(BlockDeviceFileSystem.FileNode, 0, 8192, new byte[10], out _));
        Assert.Equal(0, fs.Write(BlockDeviceFileSystem.FileNode, 0, 8190, new byte[10], out var n));
        Assert.Equal(2, n);
        Assert.Equal(1, fs.SetSize(BlockDeviceFileSystem.FileNode, 0, out _));
        Assert.Equal(0, fs.SetSize(BlockDeviceFileSystem.FileNode, 8192, out _));
    }
}
