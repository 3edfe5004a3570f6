using System.Security.Cryptography;
using System.Text;

namespace Asterism.Disk.Tests;

/// <summary>Hostile LUKS2 headers made with our writer and patched KDFs (both copies, checksums recomputed).</summary>
internal static class CraftedImages
{
    public const long ImageSize = Luks2Image.PayloadOffset + (64 * 1024);

    /// <summary>An image with PBKDF2 keyslots 0 … <paramref name="slots"/> − 1; <paramref name="passphrase"/> opens only keyslot <paramref name="keyIn"/>.</summary>
    public static byte[] WithSlots(int slots, byte[] passphrase, int keyIn)
    {
        var device = new MemoryBlockDevice(ImageSize);
        var first = keyIn == 0 ? passphrase : RandomNumberGenerator.GetBytes(32);
        using var image = Luks2Image.Format(device, ownsDevice: false, first);
        Assert.Equal(KeyCheckResult.Accepted, image.Unlock(first, out var volumeKey, 0));
        using (volumeKey)
        {
            for (var id = 1; id < slots; id++)
            {
                image.AddKeyslot(volumeKey!, id == keyIn ? passphrase : RandomNumberGenerator.GetBytes(32), id);
            }
        }
        return device.Snapshot();
    }

    /// <summary>Replaces the KDF of every keyslot that <paramref name="kdf"/> maps to non-null.</summary>
    public static byte[] WithKdf(byte[] image, Func<Luks2Keyslot, Luks2Kdf?> kdf)
    {
        var metadata = Luks2Header.Read(new MemoryBlockDevice(image), long.MaxValue).Metadata.Clone();
        foreach (var id in metadata.Keyslots.Keys.ToList())
        {
            if (kdf(metadata.Keyslots[id]) is { } replacement)
            {
                metadata.Keyslots[id] = metadata.Keyslots[id] with { Kdf = replacement };
            }
        }
        return Luks2ValidationTests.WithJson(image, Encoding.UTF8.GetString(metadata.ToJson()));
    }

    public static Luks2Kdf Argon2id(int passes, int memoryKiB, int lanes) => new("argon2id", passes, memoryKiB, lanes, RandomNumberGenerator.GetBytes(32));
}

public sealed class Luks2KdfBudgetTests
{
    private static readonly byte[] Key = RandomNumberGenerator.GetBytes(32);
    private static readonly Lazy<byte[]> ThirtyTwoSlots = new(() => CraftedImages.WithSlots(32, Key, keyIn: 3));

    [Fact]
    public void Open_ThirtyTwoArgon2SlotsEachAtPerSlotMaximum_RefusedBeforeAnyKdfAndUntouched()
    {
        // The attack: every slot at the per-slot maximum (1 GiB × 16 passes, one lane), each acceptable on its own;
        // trying them all used to cost 32 × 16 GiB-passes (about half an hour of managed Argon2 here).
        var hostile = CraftedImages.WithKdf(ThirtyTwoSlots.Value, _ => CraftedImages.Argon2id(16, Luks2Metadata.MaxArgon2MemoryKiB, 1));
        using var dir = new TempDir();
        var path = dir.File("hostile.img");
        File.WriteAllBytes(path, hostile);
        var before = KeyslotKdf.Invocations;

        var e = Assert.Throws<Luks2HeaderException>(() => Luks2Image.Open(path, writable: false));
        Assert.Equal(Luks2HeaderError.KdfBudgetExceeded, e.Reason);
        Assert.Contains("keyslots " + string.Join(",", Enumerable.Range(0, 32)), e.Message);
        Assert.Contains($"budget of {Luks2KdfCost.DefaultHeaderBudget}", e.Message);
        Assert.Contains("argon2id 1048576 KiB × 16 passes, 1 lanes", e.Message);
        Assert.Contains("no KDF was run", e.Message);

        var probe = StateDisk.Probe(path);
        Assert.Equal((StateDiskKind.Invalid, Luks2HeaderError.KdfBudgetExceeded), (probe.Kind, probe.InvalidReason));
        Assert.Equal(Luks2HeaderError.KdfBudgetExceeded, Assert.Throws<Luks2HeaderException>(() => StateDisk.Open(path)).Reason);
        Assert.Throws<InvalidOperationException>(() => StateDisk.Format(path, CraftedImages.ImageSize, Key));

        Assert.Equal(before, KeyslotKdf.Invocations);
        Assert.Equal(SHA256.HashData(hostile), SHA256.HashData(File.ReadAllBytes(path)));
    }

    [Fact]
    public void Open_OneSlotOverBudgetWithinPerSlotCap_RefusedNamingIt()
    {
        // 1 GiB × 8 passes passes the per-slot cap (16 GiB-passes) but alone exceeds the header budget.
        var image = CraftedImages.WithKdf(CraftedImages.WithSlots(2, Key, keyIn: 1),
            k => k.Id == 1 ? CraftedImages.Argon2id(8, Luks2Metadata.MaxArgon2MemoryKiB, 4) : null);
        var e = Assert.Throws<Luks2HeaderException>(() => Luks2Header.Read(new MemoryBlockDevice(image)));
        Assert.Equal(Luks2HeaderError.KdfBudgetExceeded, e.Reason);
        Assert.Contains("most expensive keyslot 1: argon2id 1048576 KiB × 8 passes, 4 lanes", e.Message);
        // The same header is acceptable to a caller that chose a larger budget: the refusal is the budget's, not a bound's.
        Assert.Equal(2, Luks2Header.Read(new MemoryBlockDevice(image), 2 * Luks2KdfCost.DefaultHeaderBudget).Metadata.Keyslots.Count);
    }

    [Fact]
    public void Open_CryptsetupDefaultArgon2SlotPlusOurSlots_WithinBudget_TwoDefaultSlotsNot()
    {
        // cryptsetup's default on this machine: argon2id, 1 GiB, 4 passes; our slots: PBKDF2 with 1000 iterations.
        var one = CraftedImages.WithKdf(ThirtyTwoSlots.Value, k => k.Id == 0 ? CraftedImages.Argon2id(4, 1048576, 2) : null);
        var header = Luks2Header.Read(new MemoryBlockDevice(one));
        Assert.Equal(4L * 1048576 * Luks2KdfCost.Argon2BlockUnits, Luks2KdfCost.OfKdf(header.Metadata.Keyslots[0].Kdf));
        Assert.Equal(2000, Luks2KdfCost.OfKdf(header.Metadata.Keyslots[1].Kdf));
        Assert.InRange(Luks2KdfCost.OfHeader(header.Metadata), 32L << 20, Luks2KdfCost.DefaultHeaderBudget);

        var two = CraftedImages.WithKdf(one, k => k.Id == 1 ? CraftedImages.Argon2id(4, 1048576, 2) : null);
        Assert.Equal(Luks2HeaderError.KdfBudgetExceeded, Assert.Throws<Luks2HeaderException>(() => Luks2Header.Read(new MemoryBlockDevice(two))).Reason);
    }

    [Fact]
    public void Unlock_KeyInSlot3_OpensOnlyWhenSlot3IsAsked_NoOtherSlotTried()
    {
        var device = new MemoryBlockDevice(ThirtyTwoSlots.Value);
        using var image = Luks2Image.Open(device, ownsDevice: false);
        Assert.Equal(32, image.Header.Metadata.Keyslots.Count);

        var before = KeyslotKdf.Invocations;
        Assert.Equal(KeyCheckResult.Accepted, image.CheckKey(Key, keyslot: 3));
        Assert.Equal(before + 1, KeyslotKdf.Invocations);
        Assert.Equal(KeyCheckResult.Rejected, image.CheckKey(Key, keyslot: 0));
        Assert.Equal(before + 2, KeyslotKdf.Invocations);
        Assert.Equal(KeyCheckResult.Rejected, image.CheckKey(Key, keyslot: 31));
        Assert.Equal(before + 3, KeyslotKdf.Invocations);
        // The library's "every slot" path is bounded by the same budget (32 of our slots fit in it).
        Assert.Equal(KeyCheckResult.Accepted, image.CheckKey(Key));
    }

    [Fact]
    public void StateDisk_KeyInSlot3_NodePathTriesSlot0Only()
    {
        using var dir = new TempDir();
        var path = dir.File("slot3.img");
        File.WriteAllBytes(path, ThirtyTwoSlots.Value);
        using var disk = StateDisk.Open(path);
        var before = KeyslotKdf.Invocations;
        Assert.False(disk.TryUnlock(Key));
        Assert.False(disk.TryUnlock(Key, 0));
        Assert.Equal(before + 2, KeyslotKdf.Invocations);
        Assert.False(disk.TryUnlock(Key, 32));
        Assert.True(disk.TryUnlock(Key, 3));
        Assert.True(disk.IsUnlocked);
    }

    [Fact]
    public void AddKeyslot_OverCallersBudget_RefusedAndHeaderUnchanged()
    {
        var device = new MemoryBlockDevice(CraftedImages.WithSlots(1, Key, keyIn: 0));
        var perSlot = Luks2KdfCost.OfAttempt(Luks2Header.Read(device).Metadata.Keyslots[0].Kdf, Luks2Header.Read(device).Metadata.Digest);
        using var image = Luks2Image.Open(device, ownsDevice: false, kdfBudget: (2 * perSlot) + 1);
        Assert.Equal(KeyCheckResult.Accepted, image.Unlock(Key, out var volumeKey, 0));
        using (volumeKey)
        {
            Assert.Equal(1, image.AddKeyslot(volumeKey!, RandomNumberGenerator.GetBytes(32)));
            var e = Assert.Throws<Luks2HeaderException>(() => image.AddKeyslot(volumeKey!, RandomNumberGenerator.GetBytes(32)));
            Assert.Equal(Luks2HeaderError.KdfBudgetExceeded, e.Reason);
        }
        Assert.Equal([0, 1], Luks2Header.Read(device).Metadata.Keyslots.Keys);
    }

    [Fact]
    public void OpenReadOnly_ReadOnlyImageFile_UnlocksAndReadsButNeverWrites()
    {
        using var dir = new TempDir();
        var path = dir.File("ro.img");
        using (var disk = StateDisk.Format(path, CraftedImages.ImageSize, Key))
        {
            Assert.True(disk.TryUnlock(Key));
            disk.Store.Put("workload/demo", "hello"u8);
        }
        var bytes = SHA256.HashData(File.ReadAllBytes(path));
        using (new ReadOnlyFile(path))
        {
            Assert.ThrowsAny<Exception>(() => StateDisk.Open(path));
            using var disk = StateDisk.OpenReadOnly(path);
            Assert.True(disk.TryUnlock(Key));
            Assert.Equal("hello"u8.ToArray(), disk.Store.Get("workload/demo"));
            Assert.Throws<InvalidOperationException>(() => disk.SetInitialized(true));
        }
        Assert.Equal(bytes, SHA256.HashData(File.ReadAllBytes(path)));
    }
}
