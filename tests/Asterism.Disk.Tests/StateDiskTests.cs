using System.Security.Cryptography;

namespace Asterism.Disk.Tests;

public sealed class StateDiskTests
{
    private const long ImageSize = 24L * 1024 * 1024;

    [Fact]
    public void Lifecycle_FormatUnlockStoreChangePassphrase_Works()
    {
        using var dir = new TempDir();
        var img = dir.File("state.img");
        var first = RandomNumberGenerator.GetBytes(32);
        var second = RandomNumberGenerator.GetBytes(32);
        string uuid;
        using (var disk = StateDisk.Format(img, ImageSize, first))
        {
            uuid = disk.Uuid;
            Assert.Matches("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", uuid);
            Assert.False(disk.IsInitialized);
            Assert.False(disk.IsUnlocked);
            Assert.Throws<InvalidOperationException>(() => disk.Store);
            Assert.False(disk.TryUnlock(second));
            Assert.True(disk.TryUnlock(first));
            Assert.Empty(disk.Store.Names);
            disk.Store.Put("etcd/member", "m1"u8);
            Assert.Equal(KeyCheckResult.Accepted, disk.ChangePassphrase(first, second));
            disk.SetInitialized(true);
            Assert.True(disk.IsInitialized);
            Assert.Equal("m1"u8.ToArray(), disk.Store.Get("etcd/member"));
        }
        Assert.Equal(ImageSize, new FileInfo(img).Length);
        var probe = StateDisk.Probe(img);
        Assert.Equal((StateDiskKind.Initialized, uuid), (probe.Kind, probe.Uuid));
        using (var disk = StateDisk.Open(img))
        {
            Assert.True(disk.IsInitialized);
            Assert.False(disk.TryUnlock(first));
            Assert.False(disk.IsUnlocked);
            Assert.True(disk.TryUnlock(second));
            Assert.Equal("m1"u8.ToArray(), disk.Store.Get("etcd/member"));
            disk.SetInitialized(false);
        }
        Assert.Equal(StateDiskKind.Uninitialized, StateDisk.Probe(img).Kind);
    }

    [Fact]
    public void TryUnlock_Concurrent_AllCorrect()
    {
        using var dir = new TempDir();
        var good = RandomNumberGenerator.GetBytes(32);
        var bad = RandomNumberGenerator.GetBytes(32);
        using var disk = StateDisk.Format(dir.File("c.img"), ImageSize, good);
        using var other = StateDisk.Open(dir.File("c.img"));
        var results = new bool[16];
        Parallel.For(0, results.Length, i => results[i] = (i % 2 == 0 ? disk : other).TryUnlock(i % 4 < 2 ? good : bad));
        for (var i = 0; i < results.Length; i++)
        {
            Assert.Equal(i % 4 < 2, results[i]);
        }
    }

    [Fact]
    public void Dispose_ThenUse_Throws()
    {
        using var dir = new TempDir();
        var pass = RandomNumberGenerator.GetBytes(32);
        var disk = StateDisk.Format(dir.File("d.img"), ImageSize, pass);
        Assert.True(disk.TryUnlock(pass));
        disk.Dispose();
        Assert.Throws<ObjectDisposedException>(() => disk.Store);
        Assert.Throws<ObjectDisposedException>(() => disk.TryUnlock(pass));
        Assert.DoesNotContain("0x", disk.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void TryUnlock_OversizedOrEmptyPassphrase_Rejected()
    {
        using var dir = new TempDir();
        var pass = RandomNumberGenerator.GetBytes(32);
        using var disk = StateDisk.Format(dir.File("e.img"), ImageSize, pass);
        Assert.False(disk.TryUnlock([]));
        Assert.False(disk.TryUnlock(new byte[Luks2Image.MaxPassphraseLength + 1]));
        Assert.Equal(KeyCheckResult.Rejected, disk.ChangePassphrase([], pass));
        Assert.Throws<ArgumentException>(() => disk.ChangePassphrase(pass, []));
        Assert.Equal("[redacted]", VolumeKey.Generate().ToString());
    }
}
