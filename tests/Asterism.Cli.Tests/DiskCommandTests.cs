using System.Security.Cryptography;
using Asterism.Crypto;
using Asterism.Disk;

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
        Assert.Contains("Key accepted.", stdout);

        (code, stdout, _) = await CliHarness.RunAsync("disk", "test-key", image, "--key-file", KeyFile(RandomNumberGenerator.GetBytes(32), "wrong.bin"));
        Assert.Equal(1, code);
        Assert.Contains("Key rejected.", stdout);
    }

    [Fact]
    public async Task TestKeyAndExtract_MasterSecret_DerivesDiskKeyFromUuid()
    {
        using var master = MasterSecret.Generate();
        var secretPath = PathOf("ms.json");
        master.Save(secretPath);
        var image = PathOf("node.img");
        var initial = RandomNumberGenerator.GetBytes(32);
        using (var disk = StateDisk.Format(image, 20L * 1024 * 1024, initial))
        {
            using var derived = KeyDerivation.DeriveDiskKey(master, disk.Uuid);
            Assert.Equal(KeyCheckResult.Accepted, disk.ChangePassphrase(initial, derived.Span));
            Assert.True(disk.TryUnlock(derived.Span));
            disk.Store.Put("workload/demo", "hello"u8);
            disk.Store.Put("asterism/node_state.json", "{}"u8);
        }

        var (code, stdout, _) = await CliHarness.RunAsync("disk", "test-key", image, "--master-secret", secretPath);
        Assert.Equal(0, code);
        Assert.Contains("Key accepted.", stdout);

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
}
