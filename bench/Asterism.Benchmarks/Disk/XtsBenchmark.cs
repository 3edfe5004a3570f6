using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Asterism.Disk;

namespace Asterism.Benchmarks.Disk;

/// <summary>
/// `macro xts`: XTS-AES-256 throughput on 4 KiB sectors (one core) as a ratio to `openssl speed -evp aes-256-xts`
/// measured in the same run, for every XTS path the machine supports (the 128-bit path is the baseline from before
/// wide tweaks), plus the PBKDF2 keyslot unlock time against `cryptsetup open --test-passphrase`.
/// </summary>
public sealed class XtsBenchmark : IMacroBenchmark
{
    private const int SectorSize = 4096;

    public string Name => "xts";

    public string Description => "XTS-AES-256 4 KiB sectors vs openssl speed; PBKDF2 keyslot unlock vs cryptsetup";

    public Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        // The machine is shared: interleave short rounds and keep each side's best. Both sides count CPU time
        // (openssl speed reports user CPU time by default), so other processes' load cancels out.
        var seconds = args.Length > 0 ? double.Parse(args[0], CultureInfo.InvariantCulture) : 1.0;
        var key = RandomNumberGenerator.GetBytes(AesXts.KeySize);
        // Every path this machine runs, widest first; AesNi128 is the path before wide tweaks (the baseline) and
        // Software the ECB fallback. The AES rounds are 128-bit AES-NI on all hardware paths (.NET 10 has no VAES).
        var paths = new[] { XtsPath.AesNi512, XtsPath.AesNi256, XtsPath.AesNi128, XtsPath.Software }
            .Where(AesXts.IsSupported)
            .Select(p => new AesXts(key, p))
            .ToList();
        double? openssl = null;
        var enc = new double[paths.Count];
        var dec = new double[paths.Count];
        try
        {
            for (var round = 0; round < 3; round++)
            {
                var o = OpensslXts(seconds);
                openssl = o is null ? openssl : Math.Max(openssl ?? 0, o.Value);
                for (var i = 0; i < paths.Count; i++)
                {
                    var share = paths[i].Path == XtsPath.Software ? seconds / 4 : seconds / 2;
                    enc[i] = Math.Max(enc[i], Measure(paths[i], decrypt: false, share));
                    dec[i] = Math.Max(dec[i], Measure(paths[i], decrypt: true, share));
                }
            }
            Console.WriteLine($"default path here: {AesXts.BestPath()}; load average {File.ReadAllText("/proc/loadavg").Trim()}");
            for (var i = 0; i < paths.Count; i++)
            {
                var name = paths[i].Path.ToString().ToLowerInvariant();
                Print($"xts-encrypt-{name}", enc[i], openssl);
                Print($"xts-decrypt-{name}", dec[i], openssl);
            }
            var baseline = paths.FindIndex(p => p.Path == XtsPath.AesNi128);
            for (var i = 0; baseline >= 0 && i < baseline; i++)
            {
                Console.WriteLine($"{paths[i].Path} over the AesNi128 baseline: encrypt {enc[i] / enc[baseline]:F2}x decrypt {dec[i] / dec[baseline]:F2}x");
            }
        }
        finally
        {
            paths.ForEach(p => p.Dispose());
        }

        var (ours, cryptsetup) = KeyslotUnlock();
        Console.WriteLine(cryptsetup is { } cs
            ? $"pbkdf2-keyslot-unlock {ours:F2} ms cryptsetup-test-passphrase {cs:F2} ms ratio {ours / cs:F2} (CPU time; target < 10 ms)"
            : $"pbkdf2-keyslot-unlock {ours:F2} ms (cryptsetup not found, no baseline; target < 10 ms)");
        return Task.FromResult(0);
    }

    private static void Print(string what, double ours, double? openssl) =>
        Console.WriteLine(openssl is { } o
            ? $"{what} {ours / 1e9:F2} GB/s openssl {o / 1e9:F2} GB/s ratio {ours / o:F2} (goal 1.5)"
            : $"{what} {ours / 1e9:F2} GB/s (openssl not found, no baseline)");

    /// <summary>Bytes per CPU second of one XTS path over 4 KiB sectors (also used by `macro statefs`).</summary>
    internal static double Measure(AesXts xts, bool decrypt, double seconds)
    {
        var src = RandomNumberGenerator.GetBytes(256 * SectorSize);
        var dst = new byte[src.Length];
        for (var w = 0; w < 50; w++)
        {
            Run(xts, decrypt, src, dst);
        }
        var start = Cpu();
        long bytes = 0;
        while ((Cpu() - start).TotalSeconds < seconds)
        {
            Run(xts, decrypt, src, dst);
            bytes += src.Length;
        }
        return bytes / (Cpu() - start).TotalSeconds;
    }

    private static TimeSpan Cpu()
    {
        using var p = Process.GetCurrentProcess();
        return p.TotalProcessorTime;
    }

    private static void Run(AesXts xts, bool decrypt, byte[] src, byte[] dst)
    {
        for (var s = 0; s < src.Length / SectorSize; s++)
        {
            var range = new Range(s * SectorSize, (s + 1) * SectorSize);
            if (decrypt)
            {
                xts.DecryptUnit(src.AsSpan(range), dst.AsSpan(range), (ulong)s * 8);
            }
            else
            {
                xts.EncryptUnit(src.AsSpan(range), dst.AsSpan(range), (ulong)s * 8);
            }
        }
    }

    /// <summary>Bytes per second from `openssl speed -evp aes-256-xts -bytes 4096`, or null without openssl.</summary>
    internal static double? OpensslXts(double seconds)
    {
        var output = RunProcess("openssl", "speed", "-evp", "aes-256-xts", "-bytes", "4096", "-seconds",
            Math.Max(1, (int)Math.Round(seconds)).ToString(CultureInfo.InvariantCulture));
        var line = output?.Split('\n').LastOrDefault(l => l.StartsWith("AES-256-XTS", StringComparison.OrdinalIgnoreCase));
        var field = line?.Split(' ', StringSplitOptions.RemoveEmptyEntries).LastOrDefault();
        if (field is null || !field.EndsWith('k'))
        {
            return null;
        }
        return double.Parse(field[..^1], CultureInfo.InvariantCulture) * 1000;
    }

    private static (double Ours, double? Cryptsetup) KeyslotUnlock()
    {
        var pass = RandomNumberGenerator.GetBytes(32);
        var dir = Directory.CreateTempSubdirectory("asterism-bench-xts-");
        try
        {
            var img = Path.Combine(dir.FullName, "bench.img");
            using (var device = FileBlockDevice.Create(img, Luks2Image.PayloadOffset + (1024 * 1024)))
            using (Luks2Image.Format(device, ownsDevice: false, pass))
            {
            }
            using var image = Luks2Image.Open(img, writable: false);
            for (var i = 0; i < 5; i++)
            {
                image.CheckKey(pass);
            }
            const int runs = 50;
            var start = Cpu();
            for (var i = 0; i < runs; i++)
            {
                if (image.CheckKey(pass) != KeyCheckResult.Accepted)
                {
                    throw new InvalidOperationException("benchmark image did not unlock");
                }
            }
            var ours = (Cpu() - start).TotalMilliseconds / runs;

            var keyFile = Path.Combine(dir.FullName, "key");
            File.WriteAllBytes(keyFile, pass);
            if (RunProcess("cryptsetup", "open", "--test-passphrase", "--key-file", keyFile, img) is null)
            {
                return (ours, null);
            }
            // cryptsetup as a process: its user + system CPU time, read from the child's resource usage.
            const int csRuns = 10;
            var best = double.MaxValue;
            for (var i = 0; i < csRuns; i++)
            {
                best = Math.Min(best, ChildCpuMs("cryptsetup", "open", "--test-passphrase", "--key-file", keyFile, img));
            }
            return (ours, best);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static double ChildCpuMs(string file, params string[] args)
    {
        var before = ChildrenCpuMs();
        RunProcess(file, args);
        return ChildrenCpuMs() - before;
    }

    /// <summary>User + system CPU time of all waited-for children (getrusage RUSAGE_CHILDREN).</summary>
    private static unsafe double ChildrenCpuMs()
    {
        var usage = stackalloc long[18];
        if (GetRusage(-1, usage) != 0)
        {
            throw new InvalidOperationException("getrusage failed");
        }
        return ((usage[0] + usage[2]) * 1000.0) + ((usage[1] + usage[3]) / 1000.0);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "getrusage")]
    private static extern unsafe int GetRusage(int who, long* usage);

    private static string? RunProcess(string file, params string[] args)
    {
        try
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in args)
            {
                psi.ArgumentList.Add(a);
            }
            using var p = Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            var stdout = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            _ = stderr.Result;
            return p.ExitCode == 0 ? stdout : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
