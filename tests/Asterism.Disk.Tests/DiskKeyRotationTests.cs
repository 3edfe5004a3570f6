using System.Security.Cryptography;

namespace Asterism.Disk.Tests;

/// <summary>
/// The disk-level invariant of a master-secret rotation: at every write of every step (generation 1 → 2 → 3, each
/// step followed by the rotation being run again as after a crash of the node), a power cut leaves keyslot 0 opening
/// with the old or the new generation's key — the volume key unchanged — and a rerun after the cut completes it.
/// </summary>
public sealed class DiskKeyRotationTests
{
    private const long ImageSize = Luks2Image.PayloadOffset + (64 * 1024);

    [Fact]
    public void Rotate_PowerCutAtEveryWriteOfEveryGeneration_OldOrNewKeyOpensAndRerunCompletes()
    {
        byte[][] gen = [.. Enumerable.Range(0, 3).Select(_ => RandomNumberGenerator.GetBytes(32))];
        var formatted = new MemoryBlockDevice(ImageSize);
        byte[] volumeKey;
        using (var img = Luks2Image.Format(formatted, ownsDevice: false, gen[0]))
        {
            Assert.Equal(KeyCheckResult.Accepted, img.Unlock(gen[0], out var vk, 0));
            using (vk)
            {
                volumeKey = vk!.Bytes.ToArray();
            }
        }
        var initial = formatted.Snapshot();

        // Steps: rotate 1→2, rerun 1→2 (a node crashed before it confirmed), rotate 2→3.
        (int From, int To, DiskKeyRotationResult Expected)[] steps = [(0, 1, DiskKeyRotationResult.Rotated), (0, 1, DiskKeyRotationResult.AlreadyRotated), (1, 2, DiskKeyRotationResult.Rotated)];
        var counter = new CrashingBlockDevice(initial, int.MaxValue, 0);
        using (var img = Luks2Image.Open(counter, ownsDevice: false))
        {
            foreach (var (from, to, expected) in steps)
            {
                Assert.Equal(expected, DiskKeyRotation.Rotate(img, gen[from], gen[to]));
            }
        }
        var totalWrites = counter.Writes;
        Assert.True(totalWrites >= 6, $"only {totalWrites} writes");
        for (var cut = 0; cut < totalWrites; cut++)
        {
            for (var seed = 0; seed < 3; seed++)
            {
                var device = new CrashingBlockDevice(initial, cut, (cut * 13) + seed);
                var done = 0;
                using (var img = Luks2Image.Open(device, ownsDevice: false))
                {
                    try
                    {
                        foreach (var (from, to, _) in steps)
                        {
                            DiskKeyRotation.Rotate(img, gen[from], gen[to]);
                            done++;
                        }
                        Assert.Fail("the power cut did not happen");
                    }
                    catch (PowerCutException)
                    {
                    }
                }
                var durable = device.DurableImage();
                var (from0, to0, _) = steps[done];
                using (var rebooted = Luks2Image.Open(new MemoryBlockDevice(durable), ownsDevice: false))
                {
                    var opensOld = OpensWith(rebooted, gen[from0], volumeKey);
                    var opensNew = OpensWith(rebooted, gen[to0], volumeKey);
                    Assert.True(opensOld || opensNew, $"cut at write {cut} seed {seed} during step {done}: keyslot 0 opens with neither generation");
                    Assert.False(opensOld && opensNew, "one keyslot cannot open with two keys");
                    Assert.Single(rebooted.Header.Metadata.Keyslots);
                }
                // The node reboots and runs the step again: it completes from either state.
                using (var resumed = Luks2Image.Open(new MemoryBlockDevice(durable), ownsDevice: false))
                {
                    Assert.NotEqual(DiskKeyRotationResult.Rejected, DiskKeyRotation.Rotate(resumed, gen[from0], gen[to0]));
                    Assert.True(OpensWith(resumed, gen[to0], volumeKey));
                    Assert.False(OpensWith(resumed, gen[from0], volumeKey));
                }
            }
        }
    }

    [Fact]
    public void Rotate_WrongOldKey_RejectedAndNothingWritten()
    {
        var old = RandomNumberGenerator.GetBytes(32);
        var formatted = new MemoryBlockDevice(ImageSize);
        using (Luks2Image.Format(formatted, ownsDevice: false, old))
        {
        }
        var before = formatted.Snapshot();
        var counter = new CrashingBlockDevice(before, int.MaxValue, 0);
        using var img = Luks2Image.Open(counter, ownsDevice: false);
        Assert.Equal(DiskKeyRotationResult.Rejected, DiskKeyRotation.Rotate(img, RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32)));
        Assert.Equal(0, counter.Writes);
        Assert.Throws<ArgumentException>(() => DiskKeyRotation.Rotate(img, old, old));
    }

    [Fact]
    public void Rotate_RealImage_CryptsetupOpensWithNewKeyAndRefusesOld()
    {
        using var dir = new TempDir();
        var path = dir.File("state.img");
        var old = RandomNumberGenerator.GetBytes(32);
        var next = RandomNumberGenerator.GetBytes(32);
        using (StateDisk.Format(path, 24L * 1024 * 1024, old))
        {
        }
        Assert.Equal(DiskKeyRotationResult.Rotated, DiskKeyRotation.Rotate(path, old, next));
        File.WriteAllBytes(dir.File("old.key"), old);
        File.WriteAllBytes(dir.File("new.key"), next);
        Cryptsetup.Ok("open", "--test-passphrase", "--key-file", dir.File("new.key"), "--key-slot", "0", path);
        Assert.NotEqual(0, Cryptsetup.Run("open", "--test-passphrase", "--key-file", dir.File("old.key"), path).ExitCode);
        Assert.Equal(DiskKeyRotationResult.AlreadyRotated, DiskKeyRotation.Rotate(path, old, next));
    }

    private static bool OpensWith(Luks2Image image, byte[] key, byte[] volumeKey)
    {
        if (image.Unlock(key, out var vk, 0) != KeyCheckResult.Accepted)
        {
            return false;
        }
        using (vk)
        {
            return vk!.Bytes.SequenceEqual(volumeKey);
        }
    }
}
