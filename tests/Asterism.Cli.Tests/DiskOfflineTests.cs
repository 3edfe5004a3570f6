using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Asterism.Crypto;
using Asterism.Disk;
using Asterism.Disk.Tests;
using Asterism.StateFs;

namespace Asterism.Cli.Tests;

/// <summary>
/// disk decrypt / mount / extract on a LUKS2 image holding ext4 made by the node's own path (StateFs, mkfs at
/// first mount): the files come back with their bytes and modes, the image is never written, no mount is left, and
/// bad input gets one line. Needs root (the image is made through a loop device; nobody is reached with setpriv).
/// </summary>
public sealed class DiskOfflineTests : IAsyncLifetime
{
    private static readonly byte[] Big = RandomNumberGenerator.GetBytes(3 * 1024 * 1024 + 123);
    private readonly string _dir;
    private readonly MasterSecret _master = MasterSecret.Generate();

    public DiskOfflineTests()
    {
        _dir = Directory.CreateTempSubdirectory("asterism-offline-").FullName;
        // /tmp is world-traversable; nobody needs to reach its files here in the setpriv test.
        File.SetUnixFileMode(_dir, (UnixFileMode)0x1ED);
    }

    private string PathOf(string name) => Path.Combine(_dir, name);

    private string Image => PathOf("node.img");

    private string Secret => PathOf("ms.json");

    public async Task InitializeAsync()
    {
        if (!Environment.IsPrivilegedProcess)
        {
            return;
        }
        _master.Save(Secret);
        var initial = RandomNumberGenerator.GetBytes(32);
        byte[] derived;
        using (var disk = StateDisk.Format(Image, 64L * 1024 * 1024, initial))
        {
            using var key = KeyDerivation.DeriveDiskKey(_master, disk.Uuid);
            derived = key.ToArray();
            Assert.Equal(KeyCheckResult.Accepted, disk.ChangePassphrase(initial, derived));
        }
        var state = PathOf("make-state");
        var request = new StateMountRequest { ImagePath = Image, RuntimeDirectory = PathOf("make-run"), MountPoint = state, FormatIfNoFilesystem = true };
        // FUSE + loop explicitly: /dev/mapper/control may exist where device-mapper still does not work (a container).
        await using (await new FuseExt4StateFilesystem(Ext4Driver.LoopDevice).MountAsync(request, derived, CancellationToken.None))
        {
            File.WriteAllText(Path.Combine(state, "hello.txt"), "hello from before the outage\n");
            File.SetUnixFileMode(Path.Combine(state, "hello.txt"), (UnixFileMode)0x1A4); // 0644
            Directory.CreateDirectory(Path.Combine(state, "secrets"));
            File.SetUnixFileMode(Path.Combine(state, "secrets"), (UnixFileMode)0x1C0); // 0700
            File.WriteAllBytes(Path.Combine(state, "secrets", "ca.key"), "PRIVATE"u8.ToArray());
            File.SetUnixFileMode(Path.Combine(state, "secrets", "ca.key"), (UnixFileMode)0x180); // 0600
            File.WriteAllBytes(Path.Combine(state, "big.bin"), Big);
            File.WriteAllText(Path.Combine(state, "tool"), "#!/bin/sh\n");
            File.SetUnixFileMode(Path.Combine(state, "tool"), (UnixFileMode)0x9ED); // 04755: setuid
            File.CreateSymbolicLink(Path.Combine(state, "link"), "hello.txt");
            Assert.Equal(0, (await RunAsync("mkfifo", Path.Combine(state, "pipe"))).Code);
            // Owned by nobody, so the setpriv test reads them as their owner would.
            Assert.Equal(0, (await RunAsync("chown", "-hR", "65534:65534", state)).Code);
        }
        CryptographicOperations.ZeroMemory(derived);
        foreach (var path in new[] { Image, Secret })
        {
            Assert.Equal(0, (await RunAsync("chown", "65534:65534", path)).Code);
        }
    }

    public async Task DisposeAsync()
    {
        _master.Dispose();
        await StateMountCleanup.CleanAsync(PathOf("make-run"), PathOf("make-state"), CancellationToken.None);
        Directory.Delete(_dir, recursive: true);
    }

    [RootFact]
    public async Task Decrypt_Ext4Image_WritesTheFilesystemImage0600AndRefusesToOverwrite()
    {
        var before = Hash(Image);
        var raw = PathOf("plain.raw");
        var (code, stdout, stderr) = await CliHarness.RunAsync("disk", "decrypt", Image, "--master-secret", Secret, "--out", raw);
        Assert.True(code == 0, stderr);
        Assert.Contains("an ext4 filesystem image", stdout);
        Assert.Equal((UnixFileMode)0x180, File.GetUnixFileMode(raw));
        Assert.Equal(0, (await RunAsync("e2fsck", "-fn", raw)).Code);
        Assert.Equal("hello from before the outage\n", (await RunAsync("debugfs", "-R", "cat /hello.txt", raw)).Stdout);
        Assert.Equal(before, Hash(Image));

        var rawHash = Hash(raw);
        (code, stdout, stderr) = await CliHarness.RunAsync("disk", "decrypt", Image, "--master-secret", Secret, "--out", raw);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        AssertOneLine(stderr, $"Error: {raw} exists; refusing to overwrite it");
        Assert.Equal(rawHash, Hash(raw));
    }

    [RootFact]
    public async Task Extract_Ext4Image_CopiesTreeWithModesFromReadOnlyImageLeavesNoMount()
    {
        var before = Hash(Image);
        var output = PathOf("out");
        int code;
        string stdout, stderr;
        using (new ReadOnlyFile(Image))
        {
            (code, stdout, stderr) = await CliHarness.RunAsync("disk", "extract", Image, "--master-secret", Secret, "--out", output);
        }
        Assert.True(code == 0, stderr);
        Assert.Contains($"4 files ({Big.Length + 29 + 7 + 10} bytes)", stdout);
        Assert.Contains("1 symbolic links", stdout);
        Assert.Contains("skipped 1 devices, sockets or FIFOs", stdout);
        AssertTree(output);
        Assert.Equal(before, Hash(Image));
        Assert.Equal("", await LeftoversAsync());
    }

    [RootFact]
    public async Task Mount_UntilCancelled_ServesFilesReadOnlyThenUnmountsEverything()
    {
        var dir = PathOf("mnt");
        var before = Hash(Image);
        using var cts = new CancellationTokenSource();
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var run = Task.Run(() => Program.RunAsync(["disk", "mount", Image, dir, "--master-secret", Secret], stdout, stderr, cts.Token));
        try
        {
            await WaitForAsync(() => run.IsCompleted || MountTable.Read().Any(m => m.MountPoint == dir));
            Assert.False(run.IsCompleted, stderr.ToString());

            Assert.Equal("hello from before the outage\n", File.ReadAllText(Path.Combine(dir, "hello.txt")));
            Assert.Equal(Big, File.ReadAllBytes(Path.Combine(dir, "big.bin")));
            var write = Assert.ThrowsAny<IOException>(() => File.WriteAllText(Path.Combine(dir, "new.txt"), "x"));
            Assert.Contains("Read-only", write.Message, StringComparison.OrdinalIgnoreCase);
            // The FUSE block file under the private runtime directory refuses writes itself, even to its owner.
            var block = MountTable.Read().Single(m => m.MountPoint.Contains("asterism-disk-run-", StringComparison.Ordinal)).MountPoint;
            var blockWrite = Assert.ThrowsAny<IOException>(() => File.OpenHandle(Path.Combine(block, "disk"), FileMode.Open, FileAccess.ReadWrite).Dispose());
            Assert.Contains("Read-only", blockWrite.Message, StringComparison.OrdinalIgnoreCase);
        }
        finally
        {
            await cts.CancelAsync();
        }
        Assert.True(await run == 0, stderr.ToString());
        Assert.Contains("Unmounted", stdout.ToString());
        Assert.Equal("", await LeftoversAsync());
        Assert.DoesNotContain(MountTable.Read(), m => m.MountPoint.Contains("asterism-disk-run-", StringComparison.Ordinal));
        Assert.False(Directory.Exists(dir));
        Assert.Equal(before, Hash(Image));
    }

    [RootFact]
    public async Task MountAndExtract_AsNobody_NoRootNeededSigtermUnmounts()
    {
        // The nobody user's own directory: it creates the mount point and the output there.
        var home = Directory.CreateDirectory(PathOf("nobody")).FullName;
        Assert.Equal(0, (await RunAsync("chown", "65534:65534", home)).Code);
        var dir = Path.Combine(home, "mnt");
        var output = Path.Combine(home, "out");
        var extract = await AsNobodyAsync("disk", "extract", Image, "--master-secret", Secret, "--out", output);
        Assert.True(extract.Code == 0, extract.Stderr);
        AssertTree(output);
        Assert.Equal("65534", (await RunAsync("stat", "-c", "%u", Path.Combine(output, "hello.txt"))).Stdout.Trim());

        var psi = NobodyStartInfo("disk", "mount", Image, dir, "--master-secret", Secret);
        using var process = Process.Start(psi)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var ready = await process.StandardOutput.ReadLineAsync();
        Assert.True(ready?.StartsWith("Mounted", StringComparison.Ordinal) == true, $"{ready} {(process.HasExited ? await stderr : "")}");
        Assert.DoesNotContain("allow_other", MountTable.Read().Single(m => m.MountPoint == dir).SuperOptions);
        var read = await RunAsync("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat", Path.Combine(dir, "secrets", "ca.key"));
        Assert.Equal("PRIVATE", read.Stdout);
        // fuse2fs keeps the kernel mount "rw" in mountinfo but refuses writes itself (-o ro), and the FUSE block
        // file below it refuses them too.
        var write = await RunAsync("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "touch", Path.Combine(dir, "new"));
        Assert.NotEqual(0, write.Code);
        Assert.Contains("Read-only", write.Stderr, StringComparison.OrdinalIgnoreCase);

        Assert.Equal(0, (await RunAsync("kill", "-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture))).Code);
        await process.WaitForExitAsync();
        var rest = await process.StandardOutput.ReadToEndAsync();
        Assert.True(process.ExitCode == 0, await stderr);
        Assert.Contains("Unmounted", rest);
        Assert.Equal("", await LeftoversAsync());
    }

    [RootFact]
    public async Task OfflineTools_BadInput_OneLineNothingChangedNoMount()
    {
        var before = Hash(Image);
        using var other = MasterSecret.Generate();
        other.Save(PathOf("other.json"));
        var junk = PathOf("junk.img");
        File.WriteAllBytes(junk, RandomNumberGenerator.GetBytes(1 << 20));
        var legacy = PathOf("legacy.img");
        var initial = RandomNumberGenerator.GetBytes(32);
        using (var disk = StateDisk.Format(legacy, 20L * 1024 * 1024, initial))
        {
            using var key = KeyDerivation.DeriveDiskKey(_master, disk.Uuid);
            Assert.Equal(KeyCheckResult.Accepted, disk.ChangePassphrase(initial, key.Span));
            Assert.True(disk.TryUnlock(key.Span));
            disk.Store.Put("workload/demo", "hello"u8);
        }
        var full = Directory.CreateDirectory(PathOf("full")).FullName;
        File.WriteAllText(Path.Combine(full, "keep"), "x");

        foreach (var (args, expected) in new (string[], string)[]
        {
            (["disk", "decrypt", Image, "--master-secret", PathOf("other.json"), "--out", PathOf("r1")], "key rejected"),
            (["disk", "mount", Image, PathOf("m1"), "--master-secret", PathOf("other.json")], "key rejected"),
            (["disk", "extract", Image, "--master-secret", PathOf("other.json"), "--out", PathOf("o1")], "key rejected"),
            (["disk", "decrypt", junk, "--master-secret", Secret, "--out", PathOf("r1")], "not a usable LUKS2 state disk"),
            (["disk", "mount", junk, PathOf("m1"), "--master-secret", Secret], "not a usable LUKS2 state disk"),
            (["disk", "extract", junk, "--master-secret", Secret, "--out", PathOf("o1")], "not a usable LUKS2 state disk"),
            (["disk", "mount", legacy, PathOf("m1"), "--master-secret", Secret], "no ext4 filesystem in the payload"),
            (["disk", "mount", Image, full, "--master-secret", Secret], "is not empty; refusing"),
            (["disk", "extract", Image, "--master-secret", Secret, "--out", full], "is not empty; refusing"),
            (["disk", "decrypt", Image, "--master-secret", Secret, "--out", Path.Combine(full, "keep")], "exists; refusing to overwrite"),
        })
        {
            var (code, stdout, stderr) = await CliHarness.RunAsync(args);
            Assert.True(code == 1, $"{string.Join(' ', args)}: {code} {stderr}");
            Assert.Equal("", stdout);
            AssertOneLine(stderr, expected);
            Assert.False(File.Exists(PathOf("r1")) || Directory.Exists(PathOf("m1")) || Directory.Exists(PathOf("o1")), string.Join(' ', args));
        }
        Assert.Equal("x", File.ReadAllText(Path.Combine(full, "keep")));
        Assert.Single(Directory.EnumerateFileSystemEntries(full));
        Assert.Equal(before, Hash(Image));
        Assert.Equal("", await LeftoversAsync());
        Assert.DoesNotContain(MountTable.Read(), m => m.MountPoint.Contains("asterism-disk-run-", StringComparison.Ordinal) || m.MountPoint.Contains("asterism-extract-", StringComparison.Ordinal));

        // Usage errors exit 2; the legacy image still extracts its records, saying so in one line.
        Assert.Equal(2, (await CliHarness.RunAsync("disk", "decrypt", Image, "--master-secret", Secret)).ExitCode);
        var legacyRun = await CliHarness.RunAsync("disk", "extract", legacy, "--master-secret", Secret, "--out", PathOf("legacy-out"));
        Assert.True(legacyRun.ExitCode == 0, legacyRun.Stderr);
        Assert.Contains($"No ext4 filesystem in {legacy}: extracting the legacy record store.", legacyRun.Stdout);
        Assert.Equal("hello", File.ReadAllText(Path.Combine(PathOf("legacy-out"), "workload", "demo")));
    }

    private static void AssertTree(string output)
    {
        Assert.Equal("hello from before the outage\n", File.ReadAllText(Path.Combine(output, "hello.txt")));
        Assert.Equal((UnixFileMode)0x1A4, File.GetUnixFileMode(Path.Combine(output, "hello.txt")));
        Assert.Equal("PRIVATE", File.ReadAllText(Path.Combine(output, "secrets", "ca.key")));
        Assert.Equal((UnixFileMode)0x180, File.GetUnixFileMode(Path.Combine(output, "secrets", "ca.key")));
        Assert.Equal((UnixFileMode)0x1C0, File.GetUnixFileMode(Path.Combine(output, "secrets")));
        Assert.Equal(Big, File.ReadAllBytes(Path.Combine(output, "big.bin")));
        // The setuid bit is dropped: extracting as root must not plant a setuid binary.
        Assert.Equal((UnixFileMode)0x1ED, File.GetUnixFileMode(Path.Combine(output, "tool")));
        Assert.Equal("hello.txt", new FileInfo(Path.Combine(output, "link")).LinkTarget);
        Assert.False(File.Exists(Path.Combine(output, "pipe")));
    }

    private static void AssertOneLine(string stderr, string expected)
    {
        Assert.Contains(expected, stderr);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("Error: ", stderr);
    }

    private static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    private async Task<string> LeftoversAsync()
    {
        var mounts = (await RunAsync("findmnt", "-rn", "-o", "TARGET")).Stdout.Split('\n');
        return string.Join('\n', mounts.Where(l => l.Contains(_dir, StringComparison.Ordinal) || l.Contains("asterism-disk-run-", StringComparison.Ordinal) || l.Contains("asterism-extract-", StringComparison.Ordinal)));
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        // Polls, no fixed sleep; the generous deadline only turns a hang into a failure on a loaded machine.
        var deadline = DateTime.UtcNow.AddMinutes(3);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met");
            await Task.Delay(50);
        }
    }

    private static ProcessStartInfo NobodyStartInfo(params string[] args)
    {
        var psi = new ProcessStartInfo("setpriv") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])["--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "HOME=/tmp", "DOTNET_CLI_TELEMETRY_OPTOUT=1", "dotnet", Path.Combine(AppContext.BaseDirectory, "asterism.dll"), .. args])
        {
            psi.ArgumentList.Add(a);
        }
        return psi;
    }

    private static async Task<(int Code, string Stdout, string Stderr)> AsNobodyAsync(params string[] args)
    {
        using var process = Process.Start(NobodyStartInfo(args))!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await stdout, await stderr);
    }

    private static async Task<(int Code, string Stdout, string Stderr)> RunAsync(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, StandardOutputEncoding = Encoding.UTF8 };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["PATH"] = Environment.GetEnvironmentVariable("PATH") + ":/usr/sbin:/sbin";
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await stdout, await stderr);
    }
}

/// <summary>A fact that needs root (loop devices for the image's ext4, setpriv).</summary>
public sealed class RootFactAttribute : FactAttribute
{
    public RootFactAttribute()
    {
        if (!Environment.IsPrivilegedProcess)
        {
            Skip = "needs root: the test image's ext4 is made through a loop device, and nobody is reached with setpriv";
        }
    }
}
