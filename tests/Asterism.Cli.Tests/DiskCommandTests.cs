using System.Security.Cryptography;
using System.Text;
using Asterism.Crypto;
using Asterism.Disk;
using Asterism.Disk.Tests;

namespace Asterism.Cli.Tests;

public sealed class DiskCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("asterism-disk-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    private string KeyFile(byte[] key, string name = "key.bin")
    {
        File.WriteAllBytes(PathOf(name), key);
        return PathOf(name);
    }

    [Fact]
    public async Task FormatInspectTestKey_RoundTrip()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var image = PathOf("disk.img");
        var (code, stdout, stderr) = await CliHarness.RunAsync("disk", "format", image, "--size", "20MiB", "--key-file", KeyFile(key));
        Assert.True(code == 0, stderr);
        Assert.Contains("Formatted", stdout);
        Assert.Equal(20L * 1024 * 1024, new FileInfo(image).Length);

        (code, stdout, _) = await CliHarness.RunAsync("disk", "inspect", image);
        Assert.Equal(0, code);
        Assert.Contains("aes-xts-plain64", stdout);
        Assert.Contains("sector size: 4096", stdout);
        Assert.Contains("pbkdf2", stdout);
        Assert.Contains("\"diskIsInitialized\":false", stdout);
        Assert.DoesNotContain(Convert.ToHexString(key), stdout, StringComparison.OrdinalIgnoreCase);

        (code, stdout, _) = await CliHarness.RunAsync("disk", "test-key", image, "--key-file", KeyFile(key));
        Assert.Equal(0, code);
        Assert.Contains("Key accepted: it opens keyslot 0.", stdout);

        (code, stdout, _) = await CliHarness.RunAsync("disk", "test-key", image, "--key-file", KeyFile(RandomNumberGenerator.GetBytes(32), "wrong.bin"));
        Assert.Equal(1, code);
        Assert.Contains("Key rejected: it does not open keyslot 0.", stdout);
    }

    /// <summary>A node's disk as the node leaves it: keyslot 0 holds <paramref name="master"/>'s key of <paramref name="generation"/>, with these records.</summary>
    private string NodeDisk(string name, MasterSecret master, int generation, params (string Key, string Value)[] records)
    {
        var image = PathOf(name);
        var initial = RandomNumberGenerator.GetBytes(32);
        using var disk = StateDisk.Format(image, 20L * 1024 * 1024, initial);
        using var derived = KeyDerivation.DeriveDiskKey(master, disk.Uuid, generation);
        Assert.Equal(KeyCheckResult.Accepted, disk.ChangePassphrase(initial, derived.Span));
        Assert.True(disk.TryUnlock(derived.Span));
        foreach (var (key, value) in records)
        {
            disk.Store.Put(key, Encoding.UTF8.GetBytes(value));
        }
        return image;
    }

    [Fact]
    public async Task TestKeyAndExtract_MasterSecret_DerivesDiskKeyFromUuid()
    {
        using var master = MasterSecret.Generate();
        var secretPath = PathOf("ms.json");
        master.Save(secretPath);
        var image = NodeDisk("node.img", master, 1, ("workload/demo", "hello"), ("asterism/node_state.json", "{}"));

        var (code, stdout, _) = await CliHarness.RunAsync("disk", "test-key", image, "--master-secret", secretPath);
        Assert.Equal(0, code);
        Assert.Contains("Key accepted: it opens keyslot 0.", stdout);

        var outDir = PathOf("out");
        (code, stdout, var stderr) = await CliHarness.RunAsync("disk", "extract", image, "--master-secret", secretPath, "--out", outDir);
        Assert.True(code == 0, stderr);
        Assert.Contains("Extracted 2 records", stdout);
        Assert.Equal("hello", File.ReadAllText(Path.Combine(outDir, "workload", "demo")));

        using var other = MasterSecret.Generate();
        other.Save(PathOf("other.json"));
        (code, _, _) = await CliHarness.RunAsync("disk", "test-key", image, "--master-secret", PathOf("other.json"));
        Assert.Equal(1, code);
        (code, _, stderr) = await CliHarness.RunAsync("disk", "extract", image, "--master-secret", PathOf("other.json"), "--out", PathOf("out2"));
        Assert.Equal(1, code);
        Assert.Contains("key rejected", stderr);
        Assert.False(Directory.Exists(PathOf("out2")) && Directory.EnumerateFileSystemEntries(PathOf("out2")).Any());
    }

    [Fact]
    public async Task TestKeyAndExtract_RotatedMasterSecret_OpensOnlyWithItsGeneration()
    {
        // After `secret rotate --complete` the workspace's secret is of generation 2, and keyslot 0 holds generation 2's
        // key ("key-UUID@gen2"): the offline tools must derive that one, and say how when they are not told.
        using var master = MasterSecret.Generate();
        var secretPath = PathOf("ms-gen2.json");
        master.Save(secretPath);
        var image = NodeDisk("rotated.img", master, 2, ("workload/demo", "rotated"));

        var (code, stdout, _) = await CliHarness.RunAsync("disk", "test-key", image, "--master-secret", secretPath, "--generation", "2");
        Assert.Equal(0, code);
        Assert.Contains("Key accepted: it opens keyslot 0.", stdout);
        (code, stdout, _) = await CliHarness.RunAsync("disk", "test-key", image, "--master-secret", secretPath);
        Assert.Equal(1, code);
        Assert.Contains("Key rejected", stdout);

        var (extractCode, _, stderr) = await CliHarness.RunAsync("disk", "extract", image, "--master-secret", secretPath, "--out", PathOf("gen1"));
        Assert.Equal(1, extractCode);
        Assert.Contains("key generation 1, pass --generation N if the secret was rotated", stderr);
        (extractCode, _, stderr) = await CliHarness.RunAsync("disk", "extract", image, "--master-secret", secretPath, "--out", PathOf("gen2"), "--generation", "2");
        Assert.True(extractCode == 0, stderr);
        Assert.Equal("rotated", File.ReadAllText(Path.Combine(PathOf("gen2"), "workload", "demo")));
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("1000001")]
    public async Task TestKey_GenerationOutOfRange_UsageError(string generation)
    {
        using var master = MasterSecret.Generate();
        master.Save(PathOf("ms.json"));
        var image = PathOf("g.img");
        using (StateDisk.Format(image, 20L * 1024 * 1024, RandomNumberGenerator.GetBytes(32)))
        {
        }

        var (code, _, stderr) = await CliHarness.RunAsync("disk", "test-key", image, "--master-secret", PathOf("ms.json"), "--generation", generation);

        Assert.Equal(2, code);
        Assert.Contains("--generation must be 1 to 1000000", stderr);
    }

    [Fact]
    public async Task Inspect_RandomBytes_ClearError()
    {
        var image = PathOf("junk.img");
        File.WriteAllBytes(image, RandomNumberGenerator.GetBytes(64 * 1024));
        var (code, _, stderr) = await CliHarness.RunAsync("disk", "inspect", image);
        Assert.Equal(1, code);
        Assert.Contains("not a usable LUKS2 state disk", stderr);
    }

    [Fact]
    public async Task Inspect_MissingImage_ClearError()
    {
        var (code, _, stderr) = await CliHarness.RunAsync("disk", "inspect", PathOf("none.img"));
        Assert.Equal(1, code);
        Assert.Contains("does not exist", stderr);
    }

    [Theory]
    [InlineData("64")]
    [InlineData("1MiB")]
    [InlineData("lots")]
    public async Task Format_BadSize_UsageError(string size)
    {
        var (code, _, stderr) = await CliHarness.RunAsync("disk", "format", PathOf("x.img"), "--size", size, "--key-file", KeyFile([1, 2, 3]));
        Assert.Equal(2, code);
        Assert.Contains("--size", stderr);
        Assert.False(File.Exists(PathOf("x.img")));
    }

    [Fact]
    public async Task Format_ExistingImage_Refused()
    {
        var image = PathOf("keep.img");
        File.WriteAllText(image, "precious");
        var (code, _, stderr) = await CliHarness.RunAsync("disk", "format", image, "--size", "20MiB", "--key-file", KeyFile([1, 2, 3]));
        Assert.Equal(1, code);
        Assert.Contains("refusing to overwrite", stderr);
        Assert.Equal("precious", File.ReadAllText(image));
    }

    [Fact]
    public async Task TestKey_BothOrNeitherKeySource_UsageError()
    {
        var (code, _, stderr) = await CliHarness.RunAsync("disk", "test-key", PathOf("x.img"));
        Assert.Equal(2, code);
        Assert.Contains("exactly one of --key-file or --master-secret", stderr);
    }

    [Fact]
    public async Task Extract_NonEmptyOutput_Refused()
    {
        Directory.CreateDirectory(PathOf("full"));
        File.WriteAllText(Path.Combine(PathOf("full"), "f"), "x");
        using var master = MasterSecret.Generate();
        master.Save(PathOf("ms2.json"));
        var (code, _, stderr) = await CliHarness.RunAsync("disk", "extract", PathOf("x.img"), "--master-secret", PathOf("ms2.json"), "--out", PathOf("full"));
        Assert.Equal(1, code);
        Assert.Contains("not empty", stderr);
    }

    /// <summary>An image file with PBKDF2 keyslots 0 … n − 1 where <paramref name="key"/> opens only keyslot <paramref name="keyIn"/>.</summary>
    private string ImageWithSlots(string name, int slots, byte[] key, int keyIn)
    {
        var path = PathOf(name);
        using var device = FileBlockDevice.Create(path, 20L * 1024 * 1024);
        var first = keyIn == 0 ? key : RandomNumberGenerator.GetBytes(32);
        using var image = Luks2Image.Format(device, ownsDevice: false, first);
        Assert.Equal(KeyCheckResult.Accepted, image.Unlock(first, out var volumeKey, 0));
        using (volumeKey)
        {
            for (var id = 1; id < slots; id++)
            {
                image.AddKeyslot(volumeKey!, id == keyIn ? key : RandomNumberGenerator.GetBytes(32), id);
            }
        }
        return path;
    }

    /// <summary>Rewrites both header copies with every keyslot's KDF replaced, recomputing the checksums (the attacker's edit).</summary>
    private static void PatchKdfs(string path, Func<Luks2Kdf> kdf)
    {
        var bytes = File.ReadAllBytes(path);
        var metadata = Luks2Header.Read(new MemoryBlockDevice(bytes), long.MaxValue).Metadata.Clone();
        foreach (var id in metadata.Keyslots.Keys.ToList())
        {
            metadata.Keyslots[id] = metadata.Keyslots[id] with { Kdf = kdf() };
        }
        var json = metadata.ToJson();
        foreach (var offset in new[] { 0, Luks2Header.HeaderSize })
        {
            var copy = bytes.AsSpan(offset, Luks2Header.HeaderSize);
            copy[Luks2Header.BinarySize..].Clear();
            json.CopyTo(copy[Luks2Header.BinarySize..]);
            copy.Slice(448, 64).Clear();
            SHA256.HashData(copy).CopyTo(copy[448..]);
        }
        File.WriteAllBytes(path, bytes);
    }

    private static void AssertOneLine(string stderr, string expected)
    {
        Assert.Contains(expected, stderr);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.DoesNotContain("   at ", stderr);
    }

    [Fact]
    public async Task TestKey_KeyInSlot3_OpensOnlyWithKeyslot3()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var image = ImageWithSlots("slot3.img", 4, key, keyIn: 3);
        var keyFile = KeyFile(key);

        var (code, stdout, _) = await CliHarness.RunAsync("disk", "test-key", image, "--key-file", keyFile);
        Assert.Equal(1, code);
        Assert.Contains("Key rejected: it does not open keyslot 0.", stdout);

        (code, stdout, _) = await CliHarness.RunAsync("disk", "test-key", image, "--key-file", keyFile, "--keyslot", "3");
        Assert.Equal(0, code);
        Assert.Contains("Key accepted: it opens keyslot 3.", stdout);

        (code, stdout, var stderr) = await CliHarness.RunAsync("disk", "test-key", image, "--key-file", keyFile, "--keyslot", "7");
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        AssertOneLine(stderr, "keyslot 7 does not exist (keyslots: 0, 1, 2, 3)");

        (code, _, stderr) = await CliHarness.RunAsync("disk", "test-key", image, "--key-file", keyFile, "--keyslot", "32");
        Assert.Equal(2, code);
        Assert.Contains("--keyslot must be 0 to 31", stderr);
    }

    [Fact]
    public async Task DiskCommands_ThirtyTwoExpensiveKeyslots_RefusedInOneLineImageUntouched()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var image = ImageWithSlots("hostile.img", 32, key, keyIn: 0);
        // Each slot at the per-slot maximum (1 GiB × 16 passes, one lane): trying all used to take about half an hour.
        PatchKdfs(image, () => new Luks2Kdf("argon2id", 16, Luks2Metadata.MaxArgon2MemoryKiB, 1, RandomNumberGenerator.GetBytes(32)));
        var before = SHA256.HashData(File.ReadAllBytes(image));
        using var master = MasterSecret.Generate();
        master.Save(PathOf("ms.json"));

        foreach (var args in new[]
        {
            new[] { "disk", "inspect", image },
            ["disk", "test-key", image, "--key-file", KeyFile(key)],
            ["disk", "test-key", image, "--master-secret", PathOf("ms.json")],
            ["disk", "extract", image, "--master-secret", PathOf("ms.json"), "--out", PathOf("out")],
        })
        {
            var (code, stdout, stderr) = await CliHarness.RunAsync(args);
            Assert.Equal(1, code);
            Assert.DoesNotContain("Key", stdout);
            AssertOneLine(stderr, "not a usable LUKS2 state disk: LUKS2 header refused (KdfBudgetExceeded)");
            Assert.Contains("no KDF was run", stderr);
        }
        Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(image)));
        Assert.False(Directory.Exists(PathOf("out")));
    }

    [Fact]
    public async Task InspectAndTestKey_ImageOrKeyFileIsDirectory_OneLine()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var image = ImageWithSlots("ok.img", 1, key, keyIn: 0);
        Directory.CreateDirectory(PathOf("dir"));

        var (code, _, stderr) = await CliHarness.RunAsync("disk", "inspect", PathOf("dir"));
        Assert.Equal(1, code);
        AssertOneLine(stderr, $"image \"{PathOf("dir")}\" is a directory");

        (code, _, stderr) = await CliHarness.RunAsync("disk", "test-key", image, "--key-file", PathOf("dir"));
        Assert.Equal(1, code);
        AssertOneLine(stderr, $"key file \"{PathOf("dir")}\" is a directory");
    }

    [Fact]
    public async Task InspectAndTestKey_UnreadableImageOrKeyFile_OneLine()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var image = ImageWithSlots("locked.img", 1, key, keyIn: 0);
        var keyFile = KeyFile(key);

        // Root reads any file whatever its mode, so the unreadable file is made by another handle's exclusive lock
        // (.NET takes flock locks); without root, mode 000 as well.
        using (new FileStream(image, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
        {
            foreach (var args in new[] { new[] { "disk", "inspect", image }, ["disk", "test-key", image, "--key-file", keyFile] })
            {
                var (code, _, stderr) = await CliHarness.RunAsync(args);
                Assert.Equal(1, code);
                AssertOneLine(stderr, $"cannot read image \"{image}\"");
            }
        }
        using (new FileStream(keyFile, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
        {
            var (code, _, stderr) = await CliHarness.RunAsync("disk", "test-key", image, "--key-file", keyFile);
            Assert.Equal(1, code);
            AssertOneLine(stderr, $"cannot read key file \"{keyFile}\"");
        }
        if (!Environment.IsPrivilegedProcess)
        {
            File.SetUnixFileMode(image, UnixFileMode.None);
            File.SetUnixFileMode(keyFile, UnixFileMode.None);
            var (code, _, stderr) = await CliHarness.RunAsync("disk", "inspect", image);
            Assert.Equal(1, code);
            AssertOneLine(stderr, $"cannot read image \"{image}\": permission denied");
            (code, _, stderr) = await CliHarness.RunAsync("disk", "format", PathOf("new.img"), "--size", "20MiB", "--key-file", keyFile);
            Assert.Equal(1, code);
            AssertOneLine(stderr, $"cannot read key file \"{keyFile}\": permission denied");
        }
    }

    [Fact]
    public async Task Extract_ReadOnlyImage_Works()
    {
        using var master = MasterSecret.Generate();
        master.Save(PathOf("ms.json"));
        var image = PathOf("ro.img");
        var initial = RandomNumberGenerator.GetBytes(32);
        using (var disk = StateDisk.Format(image, 20L * 1024 * 1024, initial))
        {
            using var derived = KeyDerivation.DeriveDiskKey(master, disk.Uuid);
            Assert.Equal(KeyCheckResult.Accepted, disk.ChangePassphrase(initial, derived.Span));
            Assert.True(disk.TryUnlock(derived.Span));
            disk.Store.Put("workload/demo", "hello"u8);
        }
        var before = SHA256.HashData(File.ReadAllBytes(image));
        using (new ReadOnlyFile(image))
        {
            var (code, stdout, stderr) = await CliHarness.RunAsync("disk", "extract", image, "--master-secret", PathOf("ms.json"), "--out", PathOf("out"));
            Assert.True(code == 0, stderr);
            Assert.Contains("Extracted 1 records", stdout);
        }
        Assert.Equal("hello", File.ReadAllText(Path.Combine(PathOf("out"), "workload", "demo")));
        Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(image)));
    }

    [Fact]
    public async Task TestKeyAndExtract_MasterSecretIsADirectoryOrLocked_OneLineNothingWritten()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var image = ImageWithSlots("ms-input.img", 1, key, keyIn: 0);
        var directory = Directory.CreateDirectory(PathOf("secret-dir")).FullName;
        using (var master = MasterSecret.Generate())
        {
            master.Save(PathOf("locked.json"));
        }
        var before = SHA256.HashData(File.ReadAllBytes(image));

        foreach (var (secret, expected) in new[]
        {
            (directory, $"master secret file \"{directory}\" is a directory, not a master secret file"),
            (PathOf("locked.json"), $"master secret file \"{PathOf("locked.json")}\" cannot be read"),
        })
        {
            using var lockedFile = secret == directory ? null : new FileStream(secret, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
            var (code, stdout, stderr) = await CliHarness.RunAsync("disk", "test-key", image, "--master-secret", secret);
            Assert.Equal(1, code);
            Assert.Equal("", stdout);
            AssertOneLine(stderr, expected);

            (code, _, stderr) = await CliHarness.RunAsync("disk", "extract", image, "--master-secret", secret, "--out", PathOf("out"));
            Assert.Equal(1, code);
            AssertOneLine(stderr, expected);
            Assert.False(Directory.Exists(PathOf("out")));
        }
        Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(image)));
    }

    [Fact]
    public async Task TestKeyAndExtract_MissingImage_OneLine()
    {
        using (var master = MasterSecret.Generate())
        {
            master.Save(PathOf("ms.json"));
        }
        foreach (var args in new[]
        {
            new[] { "disk", "test-key", PathOf("none.img"), "--key-file", KeyFile([1, 2, 3]) },
            ["disk", "test-key", PathOf("none.img"), "--master-secret", PathOf("ms.json")],
            ["disk", "extract", PathOf("none.img"), "--master-secret", PathOf("ms.json"), "--out", PathOf("out")],
        })
        {
            var (code, _, stderr) = await CliHarness.RunAsync(args);
            Assert.Equal(1, code);
            AssertOneLine(stderr, $"image \"{PathOf("none.img")}\" does not exist");
        }
        Assert.False(Directory.Exists(PathOf("out")));
    }
}
