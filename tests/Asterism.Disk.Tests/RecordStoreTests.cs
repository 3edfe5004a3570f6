using System.Security.Cryptography;

namespace Asterism.Disk.Tests;

public sealed class RecordStoreTests
{
    private const int VolumeBytes = 2 * 1024 * 1024;

    private static VolumeKey NewKey() => VolumeKey.Generate();

    [Fact]
    public void Open_AllZeroVolume_IsEmpty()
    {
        using var key = NewKey();
        using var volume = new EncryptedVolume(new MemoryBlockDevice(VolumeBytes), 0, key);
        var store = RecordStore.Open(volume);
        Assert.Empty(store.Names);
        Assert.Equal(0UL, store.Sequence);
        Assert.Null(store.Get("anything"));
    }

    [Fact]
    public void PutGetDelete_Reopen_Persists()
    {
        using var key = NewKey();
        var device = new MemoryBlockDevice(8 * 1024 * 1024);
        using var volume = new EncryptedVolume(device, 0, key);
        var store = RecordStore.Open(volume);
        var big = RandomNumberGenerator.GetBytes(RecordStore.MaxValueBytes);
        var name255 = new string('n', 255);
        store.Commit(new RecordBatch().Put("node/state", "joined"u8).Put("big", big).Put("empty", []).Put(name255, [1, 2, 3]).Put("ünïcode", [9]));
        store.Put("node/state", "recovered"u8);
        Assert.True(store.Delete("empty"));
        Assert.False(store.Delete("empty"));

        using var volume2 = new EncryptedVolume(device, 0, key);
        var reopened = RecordStore.Open(volume2);
        Assert.Equal(3UL, reopened.Sequence);
        Assert.Equal(["big", name255, "node/state", "ünïcode"], reopened.Names);
        Assert.Equal("recovered"u8.ToArray(), reopened.Get("node/state"));
        Assert.Equal(big, reopened.Get("big"));
        Assert.Equal([1, 2, 3], reopened.Get(name255));
        Assert.Null(reopened.Get("empty"));
    }

    [Fact]
    public void Put_InvalidNamesOrValues_Throw()
    {
        using var key = NewKey();
        using var volume = new EncryptedVolume(new MemoryBlockDevice(VolumeBytes), 0, key);
        var store = RecordStore.Open(volume);
        Assert.Throws<ArgumentException>(() => store.Put("", [1]));
        Assert.Throws<ArgumentException>(() => store.Put(new string('x', 256), [1]));
        Assert.Throws<ArgumentException>(() => store.Put(new string('é', 128), [1]));
        Assert.Throws<ArgumentException>(() => store.Put("\ud800", [1]));
        Assert.Throws<ArgumentException>(() => store.Put("big", new byte[RecordStore.MaxValueBytes + 1]));
        Assert.Throws<RecordStoreFullException>(() => store.Put("too-big-for-volume", new byte[RecordStore.MaxValueBytes]));
    }

    [Fact]
    public void Put_StoreFull_NothingChangedAndStoreStaysUsable()
    {
        using var key = VolumeKey.FromBytes(RandomNumberGenerator.GetBytes(64));
        using var volume = new EncryptedVolume(new MemoryBlockDevice(VolumeBytes), 0, key);
        var store = RecordStore.Open(volume);
        store.Put("state", "kept"u8);
        Assert.Throws<RecordStoreFullException>(() => store.Put("too-big-for-volume", new byte[RecordStore.MaxValueBytes]));
        Assert.Equal("kept"u8.ToArray(), store.Get("state"));
        store.Put("after", "ok"u8);
        var reopened = RecordStore.Open(volume);
        Assert.Equal("kept"u8.ToArray(), reopened.Get("state"));
        Assert.Equal("ok"u8.ToArray(), reopened.Get("after"));
        Assert.Null(reopened.Get("too-big-for-volume"));
    }

    [Fact]
    public void Open_TamperedValue_ThrowsCorrupt()
    {
        using var key = NewKey();
        var device = new MemoryBlockDevice(VolumeBytes);
        using var volume = new EncryptedVolume(device, 0, key);
        var store = RecordStore.Open(volume);
        store.Put("secret", RandomNumberGenerator.GetBytes(100));
        // The first data sector after the two superblocks holds the value.
        var raw = new byte[1];
        device.Read(2 * 4096, raw);
        raw[0] ^= 1;
        device.Write(2 * 4096, raw);
        Assert.Throws<RecordStoreCorruptException>(() => store.Get("secret"));
    }

    private static readonly Func<RecordBatch>[] Scenario =
    [
        () => new RecordBatch().Put("a", Fill(100, 1)).Put("b", Fill(5000, 2)),
        () => new RecordBatch().Put("a", Fill(9000, 3)).Delete("b").Put("c", []),
        () => new RecordBatch().Put("d", Fill(20000, 4)).Put("a", Fill(10, 5)),
        () => new RecordBatch().Delete("a").Put("e", Fill(4096, 6)),
        () => new RecordBatch().Put("b", Fill(70000, 7)),
    ];

    private static byte[] Fill(int length, byte seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static Dictionary<string, byte[]> Apply(Dictionary<string, byte[]> state, RecordBatch batch)
    {
        var next = new Dictionary<string, byte[]>(state);
        foreach (var (name, value) in batch.Changes)
        {
            if (value is null)
            {
                next.Remove(name);
            }
            else
            {
                next[name] = value;
            }
        }
        return next;
    }

    private static Dictionary<string, byte[]> ReadAll(RecordStore store) => store.Names.ToDictionary(n => n, n => store.Get(n)!);

    private static bool Same(Dictionary<string, byte[]> a, Dictionary<string, byte[]> b) =>
        a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var v) && v.AsSpan().SequenceEqual(kv.Value));

    [Fact]
    public void Commit_PowerCutAtEveryWrite_ReadsOldOrNewState()
    {
        using var key = NewKey();
        var states = new List<Dictionary<string, byte[]>> { new() };
        foreach (var step in Scenario)
        {
            states.Add(Apply(states[^1], step()));
        }
        var initial = new byte[VolumeBytes];
        var counter = new CrashingBlockDevice(initial, int.MaxValue, 0);
        using (var v = new EncryptedVolume(counter, 0, key))
        {
            var s = RecordStore.Open(v);
            foreach (var step in Scenario)
            {
                s.Commit(step());
            }
            Assert.True(Same(states[^1], ReadAll(s)));
        }
        var totalWrites = counter.Writes;
        Assert.True(totalWrites >= 3 * Scenario.Length);
        int sawOld = 0, sawNew = 0;
        for (var cut = 0; cut < totalWrites; cut++)
        {
            for (var seed = 0; seed < 4; seed++)
            {
                var device = new CrashingBlockDevice(initial, cut, (cut * 31) + seed);
                var done = 0;
                using (var v = new EncryptedVolume(device, 0, key))
                {
                    var s = RecordStore.Open(v);
                    try
                    {
                        foreach (var step in Scenario)
                        {
                            s.Commit(step());
                            done++;
                        }
                        Assert.Fail("the power cut did not happen");
                    }
                    catch (PowerCutException)
                    {
                    }
                    Assert.Throws<InvalidOperationException>(() => s.Get("a"));
                }
                var rebooted = new MemoryBlockDevice(device.DurableImage());
                using var v2 = new EncryptedVolume(rebooted, 0, key);
                var after = ReadAll(RecordStore.Open(v2));
                var isOld = Same(states[done], after);
                var isNew = Same(states[done + 1], after);
                Assert.True(isOld || isNew, $"cut at write {cut} seed {seed}: torn state after commit {done}");
                sawOld += isOld ? 1 : 0;
                sawNew += isNew && !isOld ? 1 : 0;

                // The store stays usable after the reboot.
                var s3 = RecordStore.Open(v2);
                s3.Put("after-reboot", [42]);
                using var v3 = new EncryptedVolume(rebooted, 0, key);
                Assert.Equal([42], RecordStore.Open(v3).Get("after-reboot"));
            }
        }
        Assert.True(sawOld > 0 && sawNew > 0, $"old {sawOld} new {sawNew}");
    }
}
