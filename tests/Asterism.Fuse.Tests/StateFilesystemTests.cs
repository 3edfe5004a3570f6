using Asterism.StateFs;

namespace Asterism.Fuse.Tests;

public sealed class StateFilesystemTests
{
    [RootFact]
    public async Task LoopExt4_FormatWriteRemount_FileSurvivesAndOfflineImagePassesE2fsck()
    {
        await using var volume = TestVolume.Create();
        var fs = new FuseExt4StateFilesystem(Ext4Driver.LoopDevice);
        var request = new StateMountRequest { ImagePath = volume.ImagePath, RuntimeDirectory = volume.Runtime, MountPoint = volume.StateDir, FormatIfNoFilesystem = true };
        await using (var mount = await fs.MountAsync(request, volume.Passphrase, CancellationToken.None))
        {
            Assert.StartsWith("/dev/loop", mount.BlockPath, StringComparison.Ordinal);
            Assert.Equal("ext4", MountTable.Under(volume.StateDir).Single().FileSystemType);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(volume.StateDir));
            await File.WriteAllTextAsync(Path.Combine(volume.StateDir, "hello.txt"), "written through ext4, loop, FUSE and XTS");
        }
        Assert.Equal(string.Empty, await Tool.LeftoversAsync(volume.Directory));

        // Second boot: no formatting allowed, the file is there.
        await using (var mount = await fs.MountAsync(request with { FormatIfNoFilesystem = false }, volume.Passphrase, CancellationToken.None))
        {
            Assert.Equal("written through ext4, loop, FUSE and XTS", await File.ReadAllTextAsync(Path.Combine(volume.StateDir, "hello.txt")));
        }

        var raw = volume.DecryptToRawFile();
        var fsck = await Tool.RunAsync("e2fsck", "-fn", raw);
        Assert.True(fsck.ExitCode == 0, fsck.Stdout + fsck.Stderr);
        var cat = await Tool.RunAsync("debugfs", "-R", "cat /hello.txt", raw);
        Assert.Equal("written through ext4, loop, FUSE and XTS", cat.Stdout);
        Assert.Equal(string.Empty, await Tool.LeftoversAsync(volume.Directory));
    }

    [RootFact]
    public async Task LoopExt4_AttachedBySystemCalls_LoopAndMountCarryLosetupsAndMountsFlags()
    {
        // The loop device and the mount are made with ioctl/mount(2) from this process, not losetup and mount(8):
        // they must come out as those commands made them (4 KiB blocks, backed by the FUSE file, nosuid,nodev, and
        // read-only all the way down for a read-only request).
        await using var volume = TestVolume.Create();
        var fs = new FuseExt4StateFilesystem(Ext4Driver.LoopDevice);
        var request = new StateMountRequest { ImagePath = volume.ImagePath, RuntimeDirectory = volume.Runtime, MountPoint = volume.StateDir, FormatIfNoFilesystem = true };
        await using (var mount = await fs.MountAsync(request, volume.Passphrase, CancellationToken.None))
        {
            var loop = Path.GetFileName(mount.BlockPath);
            Assert.Equal("4096", File.ReadAllText($"/sys/block/{loop}/queue/logical_block_size").Trim());
            Assert.Equal("0", File.ReadAllText($"/sys/block/{loop}/ro").Trim());
            Assert.Equal(FuseExt4StateFilesystem.BlockFile(request), File.ReadAllText($"/sys/block/{loop}/loop/backing_file").Trim());
            var options = MountOptionsOf(volume.StateDir);
            Assert.Contains("rw", options);
            Assert.Contains("nosuid", options);
            Assert.Contains("nodev", options);
            await File.WriteAllTextAsync(Path.Combine(volume.StateDir, "kept.txt"), "kept");
        }
        await using (var mount = await fs.MountAsync(request with { FormatIfNoFilesystem = false, ReadOnly = true }, volume.Passphrase, CancellationToken.None))
        {
            var loop = Path.GetFileName(mount.BlockPath);
            Assert.Equal("1", File.ReadAllText($"/sys/block/{loop}/ro").Trim());
            var options = MountOptionsOf(volume.StateDir);
            Assert.Contains("ro", options);
            Assert.Contains("nosuid", options);
            Assert.Equal("kept", await File.ReadAllTextAsync(Path.Combine(volume.StateDir, "kept.txt")));
            var write = Record.Exception(() => File.WriteAllText(Path.Combine(volume.StateDir, "refused.txt"), "x"));
            Assert.True(write is IOException or UnauthorizedAccessException, $"a write on the read-only mount gave {write?.GetType().Name ?? "no error"}");
        }
        Assert.Equal(string.Empty, await Tool.LeftoversAsync(volume.Directory));
    }

    private static string[] MountOptionsOf(string mountPoint)
    {
        var target = Path.GetFullPath(mountPoint).TrimEnd('/');
        var line = File.ReadAllLines("/proc/self/mounts").Select(l => l.Split(' ')).Last(f => f.Length > 3 && f[1] == target);
        return line[3].Split(',');
    }

    [RootFact]
    public async Task LoopExt4_Mounted_NobodyReadsNeitherLoopDeviceNorPayloadNorMountNorRuntime()
    {
        // The node's default path as the attacker sees it: the volume's directory is world-traversable (0755), so
        // every refusal below comes from our own modes, the loop device's and FUSE's missing allow_other.
        await using var volume = TestVolume.Create();
        var fs = new FuseExt4StateFilesystem(Ext4Driver.LoopDevice);
        var request = new StateMountRequest { ImagePath = volume.ImagePath, RuntimeDirectory = volume.Runtime, MountPoint = volume.StateDir, FormatIfNoFilesystem = true };
        await using var mount = await fs.MountAsync(request, volume.Passphrase, CancellationToken.None);
        await File.WriteAllTextAsync(Path.Combine(volume.StateDir, "secret.txt"), "node state");

        var loopMode = File.GetUnixFileMode(mount.BlockPath);
        Assert.True((loopMode & (UnixFileMode.OtherRead | UnixFileMode.OtherWrite)) == 0, $"{mount.BlockPath} is {loopMode}");
        var attempts = new[]
        {
            ("dd", new[] { $"if={mount.BlockPath}", "of=/dev/null", "bs=4096", "count=1" }),
            ("ls", new[] { volume.StateDir }),
            ("cat", new[] { Path.Combine(volume.StateDir, "secret.txt") }),
            ("ls", new[] { volume.Runtime }),
            ("dd", new[] { $"if={Path.Combine(volume.Runtime, "block", "disk")}", "of=/dev/null", "bs=4096", "count=1" }),
        };
        foreach (var (program, args) in attempts)
        {
            var run = await OtherUser.RunAsync([program, .. args]);
            Assert.True(run.ExitCode != 0, $"nobody ran {program} {string.Join(' ', args)}: {run.Stdout}");
            Assert.Contains("denied", run.Stderr, StringComparison.OrdinalIgnoreCase);
        }
        Assert.All(MountTable.Under(volume.Directory), m => Assert.DoesNotContain("allow_other", m.SuperOptions, StringComparison.Ordinal));
    }

    [RootFact]
    public async Task Mount_WrongKey_IsRefusedAndNothingIsLeftMounted()
    {
        await using var volume = TestVolume.Create();
        var fs = new FuseExt4StateFilesystem(Ext4Driver.LoopDevice);
        var request = new StateMountRequest { ImagePath = volume.ImagePath, RuntimeDirectory = volume.Runtime, MountPoint = volume.StateDir, FormatIfNoFilesystem = true };
        var e = await Assert.ThrowsAsync<StateFilesystemException>(() => fs.MountAsync(request, new byte[32], CancellationToken.None));
        Assert.Equal(StateFilesystemError.WrongKey, e.Error);
        Assert.Equal(string.Empty, await Tool.LeftoversAsync(volume.Directory));
    }

    [RootFact]
    public async Task Mount_NoFilesystemAndFormatNotAllowed_IsRefusedAndCleanedUp()
    {
        await using var volume = TestVolume.Create();
        var fs = new FuseExt4StateFilesystem(Ext4Driver.LoopDevice);
        var request = new StateMountRequest { ImagePath = volume.ImagePath, RuntimeDirectory = volume.Runtime, MountPoint = volume.StateDir };
        var e = await Assert.ThrowsAsync<StateFilesystemException>(() => fs.MountAsync(request, volume.Passphrase, CancellationToken.None));
        Assert.Equal(StateFilesystemError.NoFilesystem, e.Error);
        Assert.Equal(string.Empty, await Tool.LeftoversAsync(volume.Directory));
    }

    [RootFact]
    public async Task Fuse2fs_AsNobody_WritesAFileTheKernelExt4ReadsAndE2fsckAccepts()
    {
        await using var volume = TestVolume.Create(forNobody: true);
        await using (var host = await HostProcess.StartAsync(true, "state", volume.ImagePath, volume.PassphrasePath, volume.Runtime, volume.StateDir))
        {
            Assert.EndsWith("/block/disk", host.Ready, StringComparison.Ordinal);
            var entries = MountTable.Under(volume.Directory);
            Assert.All(entries, m => Assert.Contains("user_id=65534", m.SuperOptions, StringComparison.Ordinal));
            Assert.All(entries, m => Assert.DoesNotContain("allow_other", m.SuperOptions, StringComparison.Ordinal));
            var write = await OtherUser.RunAsync("sh", "-c", $"echo from-nobody > {volume.StateDir}/n.txt && sync {volume.StateDir}/n.txt && cat {volume.StateDir}/n.txt");
            Assert.True(write.ExitCode == 0, write.Stderr);
            Assert.Equal("from-nobody\n", write.Stdout);
            Assert.Equal(0, await host.StopAsync());
        }
        Assert.Equal(string.Empty, await Tool.LeftoversAsync(volume.Directory));
        var raw = volume.DecryptToRawFile();
        var fsck = await Tool.RunAsync("e2fsck", "-fn", raw);
        Assert.True(fsck.ExitCode == 0, fsck.Stdout + fsck.Stderr);
        Assert.Equal("from-nobody\n", (await Tool.RunAsync("debugfs", "-R", "cat /n.txt", raw)).Stdout);
    }

    [RootFact]
    public async Task Fuse2fs_UnlinkWhileOpen_NoHiddenFileLeftInTheDirectory()
    {
        // etcd's writability probe (write wal.tmp/.touch, close, unlink) raced libfuse's release under load and left a
        // ".fuse_hidden…" file, and etcd refused the non-empty wal.tmp. With hard_remove an unlink removes at once; an
        // unlink while the file is still open shows it deterministically.
        await using var volume = TestVolume.Create(forNobody: true);
        await using (var host = await HostProcess.StartAsync(true, "state", volume.ImagePath, volume.PassphrasePath, volume.Runtime, volume.StateDir))
        {
            var run = await OtherUser.RunAsync("sh", "-c", $"cd {volume.StateDir} && mkdir wal.tmp && exec 3>wal.tmp/.touch && echo x >&3 && rm wal.tmp/.touch && ls -A wal.tmp; exec 3>&-");
            Assert.True(run.ExitCode == 0, run.Stderr);
            Assert.Equal("", run.Stdout);
            Assert.Equal(0, await host.StopAsync());
        }
        Assert.Equal(string.Empty, await Tool.LeftoversAsync(volume.Directory));
    }

    [RootFact]
    public async Task LoopExt4_ServerKilledAfterFsync_CleanupLeavesNothingAndNextMountHasTheFile()
    {
        await using var volume = TestVolume.Create();
        await using (var host = await HostProcess.StartAsync(false, "state", volume.ImagePath, volume.PassphrasePath, volume.Runtime, volume.StateDir))
        {
            var path = Path.Combine(volume.StateDir, "acked.bin");
            var data = new byte[123_457];
            Random.Shared.NextBytes(data);
            using (var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite))
            {
                RandomAccess.Write(handle, data, 0);
                RandomAccess.FlushToDisk(handle);
            }
            // The directory entry is durable only after the directory's fsync (coreutils sync DIR fsyncs it).
            Assert.Equal(0, (await Tool.RunAsync("sync", volume.StateDir)).ExitCode);
            await File.WriteAllBytesAsync(Path.Combine(volume.Runtime, "expected"), data);
            await host.KillAsync();
        }
        Assert.NotEqual(string.Empty, await Tool.LeftoversAsync(volume.Directory));
        var actions = await StateMountCleanup.CleanAsync(volume.Runtime, volume.StateDir, CancellationToken.None);
        Assert.Contains(actions, a => a.StartsWith("losetup -d", StringComparison.Ordinal));
        Assert.Equal(string.Empty, await Tool.LeftoversAsync(volume.Directory));

        var fs = new FuseExt4StateFilesystem(Ext4Driver.LoopDevice);
        var request = new StateMountRequest { ImagePath = volume.ImagePath, RuntimeDirectory = volume.Runtime, MountPoint = volume.StateDir };
        await using (var mount = await fs.MountAsync(request, volume.Passphrase, CancellationToken.None))
        {
            Assert.Equal(await File.ReadAllBytesAsync(Path.Combine(volume.Runtime, "expected")), await File.ReadAllBytesAsync(Path.Combine(volume.StateDir, "acked.bin")));
        }
        var fsck = await Tool.RunAsync("e2fsck", "-fn", volume.DecryptToRawFile());
        Assert.True(fsck.ExitCode == 0, fsck.Stdout + fsck.Stderr);
        Assert.Equal(string.Empty, await Tool.LeftoversAsync(volume.Directory));
    }

    [Fact]
    public async Task DmCrypt_WithoutDeviceMapper_RefusesBeforeRunningAnything()
    {
        var missing = Path.Combine(Path.GetTempPath(), "asterism-no-such-dir", "control");
        var fs = new DmCryptStateFilesystem(missing);
        var request = new StateMountRequest { ImagePath = "/nonexistent/state.img", RuntimeDirectory = "/nonexistent/run", MountPoint = "/nonexistent/state" };
        var e = await Assert.ThrowsAsync<StateFilesystemException>(() => fs.MountAsync(request, new byte[32], CancellationToken.None));
        Assert.Equal(StateFilesystemError.Unsupported, e.Error);
        Assert.Contains(missing, e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists("/nonexistent"));
    }

    [Fact]
    public void IsAvailable_ComparedWithTheKernel_SaysWhatTheKernelSays()
    {
        // The kernel lists the driver's misc device in /proc/misc once device-mapper is loaded (module or built in);
        // the node /dev/mapper/control can exist without it, which is what the probe must see through.
        var driverLoaded = File.ReadLines("/proc/misc").Any(line => line.EndsWith(" device-mapper", StringComparison.Ordinal));
        Assert.Equal(Environment.IsPrivilegedProcess && driverLoaded, DmCryptStateFilesystem.IsAvailable);
        Assert.Equal(Environment.IsPrivilegedProcess && driverLoaded, DmCryptStateFilesystem.AnswersDmVersion(DmCryptStateFilesystem.DefaultControlPath));
    }

    [Fact]
    public void ForThisMachine_DriverMissingEvenWithControlNode_PicksFuse()
    {
        var driverLoaded = File.ReadLines("/proc/misc").Any(line => line.EndsWith(" device-mapper", StringComparison.Ordinal));
        if (Environment.IsPrivilegedProcess && driverLoaded)
        {
            Assert.IsType<DmCryptStateFilesystem>(StateFilesystems.ForThisMachine());
            return;
        }
        // This machine: /dev/mapper/control exists, but cryptsetup says "Cannot initialize device-mapper".
        Assert.IsType<FuseExt4StateFilesystem>(StateFilesystems.ForThisMachine());
    }

    [RootFact]
    public async Task DmCrypt_ControlNodeWithoutDriver_RefusesBeforeRunningAnything()
    {
        // A control node the driver does not answer: /dev/null opens, and DM_VERSION on it fails.
        var fs = new DmCryptStateFilesystem("/dev/null");
        var request = new StateMountRequest { ImagePath = "/nonexistent/state.img", RuntimeDirectory = "/nonexistent/run", MountPoint = "/nonexistent/state" };
        var e = await Assert.ThrowsAsync<StateFilesystemException>(() => fs.MountAsync(request, new byte[32], CancellationToken.None));
        Assert.Equal(StateFilesystemError.Unsupported, e.Error);
        Assert.Contains("does not answer on /dev/null", e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists("/nonexistent"));
    }

    [Fact]
    public void DmCrypt_Commands_AreExactAndTakeTheKeyOnStdin()
    {
        var request = new StateMountRequest { ImagePath = "/n/state.img", RuntimeDirectory = "/n/run", MountPoint = "/n/state", FormatIfNoFilesystem = true };
        var name = DmCryptStateFilesystem.MappingName("/n/state.img");
        Assert.Matches("^asterism-[0-9a-f]{16}$", name);
        var commands = new DmCryptStateFilesystem().DescribeCommands(request);
        Assert.Equal($"cryptsetup open --type luks2 --key-file - --key-slot 0 /n/state.img {name}", commands[0]);
        Assert.StartsWith($"mkfs.ext4 -q -F -b 4096 -E root_owner=", commands[1], StringComparison.Ordinal);
        Assert.EndsWith($",nodiscard,lazy_itable_init=1,lazy_journal_init=1 /dev/mapper/{name}   (only when no ext4 superblock)", commands[1], StringComparison.Ordinal);
        Assert.Equal($"mount -t ext4 -o nosuid,nodev /dev/mapper/{name} /n/state", commands[2]);
        Assert.Equal([$"umount /n/state", $"cryptsetup close {name}"], DmCryptStateFilesystem.DescribeUnmountCommands(request));
    }

    [Fact]
    public async Task Cleanup_NothingMounted_DoesNothing()
    {
        var dir = Directory.CreateTempSubdirectory("asterism-clean-");
        try
        {
            Assert.Empty(await StateMountCleanup.CleanAsync(Path.Combine(dir.FullName, "run"), Path.Combine(dir.FullName, "state"), CancellationToken.None));
        }
        finally
        {
            dir.Delete(true);
        }
    }
}
