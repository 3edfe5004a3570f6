using System.Diagnostics;

namespace Asterism.Disk.Tests;

/// <summary>Runs the real cryptsetup 2.6 binary (package cryptsetup-bin) on image files; no device-mapper needed.</summary>
internal static class Cryptsetup
{
    private static readonly string Binary = Find();

    private static string Find()
    {
        foreach (var p in new[] { "/usr/sbin/cryptsetup", "/sbin/cryptsetup", "/usr/bin/cryptsetup" })
        {
            if (File.Exists(p))
            {
                return p;
            }
        }
        throw new InvalidOperationException("cryptsetup not found: install the Debian package 'cryptsetup-bin'.");
    }

    public static (int ExitCode, string Stdout, string Stderr) Run(params string[] args)
    {
        var psi = new ProcessStartInfo(Binary) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr);
    }

    public static string Ok(params string[] args)
    {
        var (code, stdout, stderr) = Run(args);
        if (code != 0)
        {
            throw new InvalidOperationException($"cryptsetup {string.Join(' ', args)} failed with {code}: {stderr}");
        }
        return stdout;
    }
}

/// <summary>A temporary directory removed on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = Directory.CreateTempSubdirectory("asterism-disk-").FullName;
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>
/// Makes a file read-only for the duration: mode 0400, and as root (who ignores modes) also the immutable attribute
/// (<c>chattr +i</c>, ext4), so opening it for writing fails even for root.
/// </summary>
internal sealed class ReadOnlyFile : IDisposable
{
    private readonly string _path;
    private readonly bool _immutable;

    public ReadOnlyFile(string path)
    {
        _path = path;
        File.SetUnixFileMode(path, UnixFileMode.UserRead);
        _immutable = Environment.IsPrivilegedProcess && Chattr("+i");
        if (Environment.IsPrivilegedProcess && !_immutable)
        {
            throw new InvalidOperationException("running as root and chattr +i failed: cannot make a read-only file for this test");
        }
    }

    public void Dispose()
    {
        if (_immutable)
        {
            Chattr("-i");
        }
        File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    private bool Chattr(string flag)
    {
        try
        {
            using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("chattr", [flag, _path]) { RedirectStandardError = true })!;
            p.StandardError.ReadToEnd();
            p.WaitForExit();
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }
}
