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
