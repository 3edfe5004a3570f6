using Asterism.Disk;
using Asterism.StateFs;

namespace Asterism.Fuse.Tests;

public sealed class Luks2PayloadDeviceTests
{
    private static (MemoryBlockDevice Image, VolumeKey Key) NewImage(out long payloadOffset)
    {
        var image = new MemoryBlockDevice(Luks2Image.PayloadOffset + (64 * 4096));
        using var luks = Luks2Image.Format(image, ownsDevice: false, "pass"u8);
        Assert.Equal(KeyCheckResult.Accepted, luks.Unlock("pass"u8, out var key, 0));
        payloadOffset = luks.Header.Metadata.SegmentOffset;
        return (image, key!);
    }

    [Fact]
    public void Write_Unaligned_MatchesEncryptedVolumeSectorBySector()
    {
        var (image, key) = NewImage(out var offset);
        using (key)
        using (var device = new Luks2PayloadDevice(image, offset, key, ownsImage: false))
        {
            var model = new byte[device.Length];
            device.Read(0, model);
            var rng = new Random(7);
            for (var i = 0; i < 200; i++)
            {
                var length = rng.Next(0, 3 * 4096);
                var at = rng.Next(0, (int)device.Length - length);
                var data = new byte[length];
                rng.NextBytes(data);
                device.Write(at, data);
                data.CopyTo(model, at);
                var probe = new byte[rng.Next(0, 9000)];
                var probeAt = rng.Next(0, (int)device.Length - probe.Length);
                device.Read(probeAt, probe);
                Assert.True(probe.AsSpan().SequenceEqual(model.AsSpan(probeAt, probe.Length)));
            }
            // The same bytes as dm-crypt's view (EncryptedVolume: whole sectors, tweak n × 8).
            using var reference = new EncryptedVolume(image, offset, key);
            var plain = new byte[device.Length];
            reference.ReadSectors(0, plain);
            Assert.Equal(model, plain);
            Assert.Equal(0, device.LockedRanges);
        }
    }

    [Fact]
    public async Task Write_ConcurrentPartialWritesToOneSector_NoUpdateIsLost()
    {
        var (image, key) = NewImage(out var offset);
        using (key)
        using (var device = new Luks2PayloadDevice(image, offset, key, ownsImage: false))
        {
            // Eight writers own disjoint 100-byte slices of the same two sectors; each read-modify-write must not
            // undo another's slice, so after the last round every slice holds its writer's last value.
            const int writers = 8;
            const int rounds = 300;
            await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(() =>
            {
                var slice = new byte[100];
                for (var r = 0; r < rounds; r++)
                {
                    slice.AsSpan().Fill((byte)(w * rounds + r));
                    device.Write(4000 + (w * 100), slice);
                }
            })));
            var back = new byte[writers * 100];
            device.Read(4000, back);
            for (var w = 0; w < writers; w++)
            {
                Assert.All(back.AsSpan(w * 100, 100).ToArray(), b => Assert.Equal((byte)(w * rounds + rounds - 1), b));
            }
        }
    }

    [Fact]
    public void ReadWrite_OutsideThePayload_Throws()
    {
        var (image, key) = NewImage(out var offset);
        using (key)
        using (var device = new Luks2PayloadDevice(image, offset, key, ownsImage: false))
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => device.Write(device.Length - 1, new byte[2]));
            Assert.Throws<ArgumentOutOfRangeException>(() => device.Read(-1, new byte[1]));
            Assert.Throws<ArgumentOutOfRangeException>(() => device.Read(long.MaxValue, new byte[1]));
        }
    }

    [Fact]
    public void Open_WrongPassphrase_ReturnsNull()
    {
        var path = Path.Combine(Path.GetTempPath(), $"asterism-payload-{Guid.NewGuid():N}.img");
        try
        {
            StateDisk.Format(path, 20L * 1024 * 1024, "right"u8).Dispose();
            Assert.Null(Luks2PayloadDevice.Open(path, "wrong"u8));
            using var device = Luks2PayloadDevice.Open(path, "right"u8);
            Assert.Equal(4L * 1024 * 1024, device!.Length);
            Assert.Equal("Luks2PayloadDevice 4194304 bytes [key redacted]", device.ToString());
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Dispose_ThenUse_Throws()
    {
        var (image, key) = NewImage(out var offset);
        using (key)
        {
            var device = new Luks2PayloadDevice(image, offset, key, ownsImage: false);
            device.Dispose();
            Assert.Throws<ObjectDisposedException>(() => device.Read(0, new byte[1]));
            Assert.Throws<ObjectDisposedException>(() => device.Flush());
        }
    }
}
