using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Asterism.Disk;
using Asterism.StateFs;

namespace Asterism.Fuse.Tests;

/// <summary>A LUKS2 image in a fresh directory, its passphrase in a 0600 file, and cleanup of every mount and loop device below.</summary>
public sealed class TestVolume : IAsyncDisposable
{
    private TestVolume(string directory, bool forNobody)
    {
        Directory = directory;
        ForNobody = forNobody;
    }

    public string Directory { get; }

    public bool ForNobody { get; }

    public string ImagePath => Path.Combine(Directory, "state.img");

    public string PassphrasePath => Path.Combine(Directory, "passphrase");

    public byte[] Passphrase { get; } = RandomNumberGenerator.GetBytes(32);

    public string Runtime => Path.Combine(Directory, "run");

    public string StateDir => Path.Combine(Directory, "state");

    /// <summary>A 64 MiB image (48 MiB payload) formatted by our LUKS2 writer; owned by nobody when <paramref name="forNobody"/>.</summary>
    public static TestVolume Create(bool forNobody = false, long size = 64L * 1024 * 1024)
    {
        // /tmp is world-traversable, so a 0755 directory lets another user reach the mount itself: the refusal then
        // comes from FUSE (no allow_other), not from directory permissions.
        var dir = System.IO.Directory.CreateTempSubdirectory("asterism-fuse-").FullName;
        File.SetUnixFileMode(dir, (UnixFileMode)0x1ED);
        var v = new TestVolume(dir, forNobody);
        StateDisk.Format(v.ImagePath, size, v.Passphrase).Dispose();
        File.WriteAllBytes(v.PassphrasePath, v.Passphrase);
        File.SetUnixFileMode(v.PassphrasePath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        if (forNobody)
        {
            OtherUser.Chown(dir);
            OtherUser.Chown(v.ImagePath);
            OtherUser.Chown(v.PassphrasePath);
        }
        return v;
    }

    public string NewDirectory(string name)
    {
        var path = Path.Combine(Directory, name);
        System.IO.Directory.CreateDirectory(path);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        if (ForNobody)
        {
            OtherUser.Chown(path);
        }
        return path;
    }

    /// <summary>The decrypted payload, read offline from the image with our LUKS2 reader (no FUSE, no mount).</summary>
    public byte[] DecryptPayload()
    {
        using var image = Luks2Image.Open(ImagePath, writable: false);
        Assert.Equal(KeyCheckResult.Accepted, image.Unlock(Passphrase, out var key, 0));
        using (key)
        {
            using var volume = new EncryptedVolume(image.Device, image.Header.Metadata.SegmentOffset, key!);
            var plain = new byte[volume.SectorCount * EncryptedVolume.SectorSize];
            volume.ReadSectors(0, plain);
            return plain;
        }
    }

    /// <summary>Writes the decrypted payload to a raw file (for e2fsck / debugfs).</summary>
    public string DecryptToRawFile()
    {
        var raw = Path.Combine(Directory, "plain.raw");
        File.WriteAllBytes(raw, DecryptPayload());
        return raw;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await StateMountCleanup.CleanAsync(Runtime, StateDir, CancellationToken.None);
            foreach (var m in MountTable.Under(Directory))
            {
                Fuse.FuseMount.Unmount(m.MountPoint, FuseMountMethod.Kernel, lazy: true);
            }
        }
        finally
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
    }
}

/// <summary>The test host process (asterism-fuse-testhost), as root or as nobody.</summary>
public sealed class HostProcess : IAsyncDisposable
{
    private readonly Process _process;

    private HostProcess(Process process, string ready)
    {
        _process = process;
        Ready = ready;
    }

    /// <summary>What the host printed after "ready " (the block file or device).</summary>
    public string Ready { get; }

    public int Pid => _process.Id;

    public static async Task<HostProcess> StartAsync(bool asNobody, params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "asterism-fuse-testhost.dll");
        var psi = new ProcessStartInfo(asNobody ? "setpriv" : "dotnet") { UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        if (asNobody)
        {
            foreach (var a in new[] { "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "HOME=/tmp", "DOTNET_CLI_TELEMETRY_OPTOUT=1", "dotnet" })
            {
                psi.ArgumentList.Add(a);
            }
        }
        psi.ArgumentList.Add(dll);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        var process = Process.Start(psi)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var line = await process.StandardOutput.ReadLineAsync();
        if (line is null || !line.StartsWith("ready ", StringComparison.Ordinal))
        {
            await process.WaitForExitAsync();
            throw new InvalidOperationException($"test host did not get ready (exit {process.ExitCode}): {line} {await stderr}");
        }
        return new HostProcess(process, line["ready ".Length..]);
    }

    /// <summary>SIGKILL: the FUSE server dies without unmounting.</summary>
    public async Task KillAsync()
    {
        // setpriv execs, so the process is the host itself.
        _process.Kill();
        await _process.WaitForExitAsync();
    }

    /// <summary>Closes stdin: the host unmounts and exits.</summary>
    public async Task<int> StopAsync()
    {
        _process.StandardInput.Close();
        await _process.WaitForExitAsync();
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }
}

/// <summary>Runs commands as nobody:nogroup with setpriv (needs root).</summary>
public static partial class OtherUser
{
    public static bool IsRoot => geteuid() == 0;

    public static Task<CommandResult> RunAsync(params string[] command) =>
        Tool.RunAsync("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", .. command]);

    public static void Chown(string path)
    {
        if (chown(path, 65534, 65534) != 0)
        {
            throw new IOException($"chown {path} failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    [LibraryImport("libc")]
    private static partial uint geteuid();

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int chown(string path, uint uid, uint gid);
}

/// <summary>Runs a system tool and collects its output.</summary>
public static class Tool
{
    public static async Task<CommandResult> RunAsync(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["PATH"] = Environment.GetEnvironmentVariable("PATH") + ":/usr/sbin:/sbin";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return new CommandResult(p.ExitCode, await stdout, await stderr);
    }

    /// <summary>Mounts and loop devices that mention <paramref name="directory"/> (findmnt and losetup -a).</summary>
    public static async Task<string> LeftoversAsync(string directory)
    {
        var mounts = (await RunAsync("findmnt", "-rn", "-o", "TARGET,SOURCE")).Stdout;
        // Backing files from sysfs, not `losetup -a`: that takes every loop device's lock and hangs for good when
        // some other user's loop device is stuck on a dead FUSE server (seen on the shared machine).
        var loops = string.Join('\n', Directory.EnumerateDirectories("/sys/block", "loop*")
            .Select(d => Path.Combine(d, "loop", "backing_file"))
            .Where(File.Exists)
            .Select(f => $"{f} {File.ReadAllText(f).Trim()}"));
        return string.Join('\n', (mounts + loops).Split('\n').Where(l => l.Contains(directory, StringComparison.Ordinal)));
    }
}

/// <summary>A fact that needs root (mount(2), loop devices, setpriv).</summary>
public sealed class RootFactAttribute : FactAttribute
{
    public RootFactAttribute()
    {
        if (!OtherUser.IsRoot)
        {
            Skip = "needs root: mounts, loop devices and switching to nobody with setpriv";
        }
    }
}
