using System.Diagnostics;

namespace Asterism.Cli.Tests;

/// <summary>
/// The --out directory of <c>tpm enroll</c> under a parent others may write to (0777, not sticky), with the attacker
/// (uid nobody, via setpriv) swapping the directory for a symbolic link to its own directory in a tight loop while
/// the CLI opens and writes: the writes land in the verified directory or are refused, never in the attacker's.
/// Needs root (setpriv, chown).
/// </summary>
public sealed class PrivateOutputDirectoryTests : IDisposable
{
    private const int WantedWrites = 1000;
    private const int WantedRefusals = 25;
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(60);

    private readonly string _base = Directory.CreateTempSubdirectory("asterism-outdir-").FullName;

    public PrivateOutputDirectoryTests() =>
        // nobody must reach the parent and its own directory below this root-owned temp directory.
        File.SetUnixFileMode(_base, (UnixFileMode)0b111_101_101);

    public void Dispose() => Directory.Delete(_base, recursive: true);

    [Fact]
    public async Task Open_NobodySwapsDirectoryForSymlinkInALoop_NothingReachesTheAttackersDirectory()
    {
        var parent = Directory.CreateDirectory(Path.Combine(_base, "shared")).FullName;
        File.SetUnixFileMode(parent, (UnixFileMode)0b111_111_111); // world-writable, no sticky bit
        var attacker = Directory.CreateDirectory(Path.Combine(_base, "attacker")).FullName;
        File.SetUnixFileMode(attacker, (UnixFileMode)0b111_111_111);
        await RunOkAsync("chown", "65534:65534", attacker);
        var outDir = Path.Combine(parent, "node");
        using (PrivateOutputDirectory.Open(outDir, "--out"))
        {
        }

        // The swap, as fast as Python can do it: move the real directory aside, put a link in its place, take it away.
        var script = $"""
            import os, time
            d, kept, target = {Quote(outDir)}, {Quote(Path.Combine(parent, "kept-"))}, {Quote(attacker)}
            i = 0
            while True:
                i += 1
                try:
                    os.rename(d, kept + str(i))
                except OSError:
                    pass
                try:
                    os.symlink(target, d)
                    time.sleep(0.001)
                    os.unlink(d)
                except OSError:
                    pass
            """;
        using var swapper = Process.Start(new ProcessStartInfo("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", script])
        {
            UseShellExecute = false,
        })!;
        int written = 0, refused = 0, lost = 0;
        var watch = Stopwatch.StartNew();
        try
        {
            while ((written < WantedWrites || refused < WantedRefusals) && watch.Elapsed < Budget && !swapper.HasExited)
            {
                try
                {
                    using var directory = PrivateOutputDirectory.Open(outDir, "--out");
                    directory.WriteFile("tpm-endorsement-auth", "not for the attacker"u8);
                    written++;
                }
                catch (CliError e) when (e.Message.Contains("symbolic link", StringComparison.Ordinal))
                {
                    refused++;
                }
                catch (CliError e) when (e.Message.Contains("No such file", StringComparison.Ordinal))
                {
                    // Renamed away between mkdirat and openat: nothing opened, nothing written.
                    lost++;
                }
            }
        }
        finally
        {
            swapper.Kill();
            await swapper.WaitForExitAsync();
        }

        Assert.Empty(Directory.GetFileSystemEntries(attacker));
        // The race was really run: some opens met the link, some wrote into the real directory.
        Assert.True(written > 0 && refused > 0, $"written {written}, refused {refused}, lost {lost} in {watch.Elapsed}");
    }

    [Fact]
    public void Open_MissingDirectoryAndParent_CreatedPrivateAndFilesPrivate()
    {
        var outDir = Path.Combine(_base, "missing-parent", "fresh");

        using (var directory = PrivateOutputDirectory.Open(outDir, "--out"))
        {
            directory.WriteFile("identity.pem", "x"u8);
        }

        Assert.Equal((UnixFileMode)0b111_000_000, File.GetUnixFileMode(outDir));
        Assert.Equal((UnixFileMode)0b110_000_000, File.GetUnixFileMode(Path.Combine(outDir, "identity.pem")));
        Assert.Equal(["identity.pem"], Directory.GetFileSystemEntries(outDir).Select(Path.GetFileName));
    }

    [Fact]
    public void ReadFile_PlantedLinkOrOpenFile_NotTrusted()
    {
        var outDir = Directory.CreateDirectory(Path.Combine(_base, "planted")).FullName;
        var elsewhere = Path.Combine(_base, "elsewhere");
        File.WriteAllText(elsewhere, "secret elsewhere");
        File.CreateSymbolicLink(Path.Combine(outDir, "link"), elsewhere);
        File.WriteAllText(Path.Combine(outDir, "open"), "readable by all");
        File.SetUnixFileMode(Path.Combine(outDir, "open"), (UnixFileMode)0b110_100_100);

        using var directory = PrivateOutputDirectory.Open(outDir, "--out");

        Assert.Null(directory.ReadFile("link", 100));
        Assert.Null(directory.ReadFile("open", 100));
        directory.WriteFile("link", "mine"u8);
        Assert.Equal("secret elsewhere", File.ReadAllText(elsewhere));
        Assert.Equal("mine"u8.ToArray(), directory.ReadFile("link", 100));
    }

    private static string Quote(string s) => "'" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal) + "'";

    private static async Task RunOkAsync(string file, params string[] args)
    {
        using var p = Process.Start(new ProcessStartInfo(file, args) { UseShellExecute = false })!;
        await p.WaitForExitAsync();
        Assert.Equal(0, p.ExitCode);
    }
}
