using System.Security.Cryptography;

namespace Asterism.Disk.Tests;

public sealed class Luks2CrashTests
{
    private const long ImageSize = Luks2Image.PayloadOffset + (64 * 1024);

    private sealed record DiskState(Dictionary<int, byte[]> Slots, bool? Initialized);

    private static bool Matches(Luks2Image image, DiskState state)
    {
        if (!image.Header.Metadata.Keyslots.Keys.Order().SequenceEqual(state.Slots.Keys.Order()))
        {
            return false;
        }
        foreach (var (slot, pass) in state.Slots)
        {
            if (image.CheckKey(pass, slot) != KeyCheckResult.Accepted)
            {
                return false;
            }
        }
        var token = image.GetToken(StateDiskToken.Id);
        bool? initialized = token is null ? null : StateDiskToken.Parse(token);
        return initialized == state.Initialized;
    }

    [Fact]
    public void HeaderUpdates_PowerCutAtEveryWrite_OpenWithOldOrNewPassphrase()
    {
        byte[][] p = [.. Enumerable.Range(0, 4).Select(_ => RandomNumberGenerator.GetBytes(32))];
        var formatted = new MemoryBlockDevice(ImageSize);
        using (Luks2Image.Format(formatted, ownsDevice: false, p[0]))
        {
        }
        var initial = formatted.Snapshot();

        var states = new List<DiskState>
        {
            new(new() { [0] = p[0] }, null),
            new(new() { [0] = p[1] }, null),
            new(new() { [0] = p[1], [1] = p[2] }, null),
            new(new() { [0] = p[1], [1] = p[2] }, true),
            new(new() { [0] = p[1] }, true),
            new(new() { [0] = p[3] }, true),
        };
        Action<Luks2Image>[] steps =
        [
            img => Assert.Equal(KeyCheckResult.Accepted, img.ChangePassphrase(0, p[0], p[1])),
            img =>
            {
                Assert.Equal(KeyCheckResult.Accepted, img.Unlock(p[1], out var vk));
                using (vk)
                {
                    Assert.Equal(1, img.AddKeyslot(vk!, p[2]));
                }
            },
            img => img.SetToken(StateDiskToken.Id, StateDiskToken.Serialize(true)),
            img => img.RemoveKeyslot(1),
            img => Assert.Equal(KeyCheckResult.Accepted, img.ChangePassphrase(0, p[1], p[3])),
        ];

        var counter = new CrashingBlockDevice(initial, int.MaxValue, 0);
        using (var img = Luks2Image.Open(counter, ownsDevice: false))
        {
            foreach (var step in steps)
            {
                step(img);
            }
            Assert.True(Matches(img, states[^1]));
        }
        var totalWrites = counter.Writes;
        Assert.True(totalWrites >= 10);
        for (var cut = 0; cut < totalWrites; cut++)
        {
            for (var seed = 0; seed < 3; seed++)
            {
                var device = new CrashingBlockDevice(initial, cut, (cut * 17) + seed);
                var done = 0;
                using (var img = Luks2Image.Open(device, ownsDevice: false))
                {
                    try
                    {
                        foreach (var step in steps)
                        {
                            step(img);
                            done++;
                        }
                        Assert.Fail("the power cut did not happen");
                    }
                    catch (PowerCutException)
                    {
                    }
                }
                using var rebooted = Luks2Image.Open(new MemoryBlockDevice(device.DurableImage()), ownsDevice: false);
                Assert.True(Matches(rebooted, states[done]) || Matches(rebooted, states[done + 1]),
                    $"cut at write {cut} seed {seed} during step {done}: header opens with neither the old nor the new passphrases");
            }
        }
    }
}
