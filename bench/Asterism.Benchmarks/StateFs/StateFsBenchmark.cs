using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using Asterism.Benchmarks.Disk;
using Asterism.Disk;
using Asterism.StateFs;

namespace Asterism.Benchmarks.StateFs;

/// <summary>
/// `macro statefs`: the same fio jobs (sequential 1 MiB read and write, 4 KiB random read, 4 KiB writes each followed
/// by fsync) on the state filesystem — a LUKS2 image made by our own code, served by our FUSE server, loop device,
/// kernel ext4 (<see cref="FuseExt4StateFilesystem"/>) — and on a plain ext4 image of the same size on the same disk,
/// loop-mounted: interleaved job by job in one run, ratios against the targets of issue #14. With the default A/B the
/// state filesystem's loop device is measured buffered (what StateFs sets up) and with direct I/O on (the candidate),
/// toggled on the same mount. Also XTS against `openssl speed`. Root only. Options: --quick, --fuse2fs, --no-ab,
/// --rounds N (the four jobs N times, interleaved).
/// </summary>
public sealed partial class StateFsBenchmark : IMacroBenchmark
{
    private const long MiB = 1024 * 1024;

    public string Name => "statefs";

    public string Description => "fio on the state filesystem (LUKS2+FUSE+loop+ext4) vs plain loop-mounted ext4; XTS vs openssl";

    public async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        var quick = args.Contains("--quick");
        var fuse2fs = args.Contains("--fuse2fs");
        var ab = !args.Contains("--no-ab");
        var roundsAt = Array.IndexOf(args, "--rounds");
        var rounds = roundsAt >= 0 && roundsAt + 1 < args.Length ? int.Parse(args[roundsAt + 1], CultureInfo.InvariantCulture) : 1;
        if (!Environment.IsPrivilegedProcess)
        {
            Console.Error.WriteLine("macro statefs needs root (loop devices, mount, evicting the image files' page cache).");
            return 2;
        }
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        // Ctrl-C and SIGTERM cancel the run; the finally below then unmounts and detaches everything.
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; cts.Cancel(); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; cts.Cancel(); });
        var work = new Workspace(Directory.CreateTempSubdirectory("asterism-bench-statefs-").FullName);
        try
        {
            await RunCoreAsync(work, quick, fuse2fs, ab, rounds, cts.Token);
            return 0;
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            Console.Error.WriteLine("interrupted; cleaning up");
            return 130;
        }
        finally
        {
            var left = await work.CleanupAsync();
            Console.WriteLine(left.Count == 0
                ? "cleanup: no mount, loop device, FUSE connection or file of this run left"
                : "cleanup LEFT: " + string.Join("; ", left));
        }
    }

    private static async Task RunCoreAsync(Workspace work, bool quick, bool fuse2fs, bool ab, int rounds, CancellationToken ct)
    {
        var fileSize = quick ? 256 * MiB : 1024 * MiB;
        var seconds = quick ? 3 : 8;
        var payload = (2 * fileSize) + (512 * MiB);
        Console.WriteLine($"# statefs: fio {Fio.Version()} psync, files {fileSize / MiB} MiB, jobs capped at {seconds} s, ext4 of {payload / MiB} MiB on each side, {Environment.ProcessorCount} cores");
        Console.WriteLine($"# load average at start: {LoadAverage()}");

        var sides = new List<Side> { await work.PlainAsync(payload, ct) };
        var state = await work.StateFsAsync("statefs", Ext4Driver.LoopDevice, payload, ct);
        if (ab)
        {
            sides.Add(state with { Name = "statefs", LoopDirectIo = false });
            sides.Add(state with { Name = "statefs-loop-dio", LoopDirectIo = true });
        }
        else
        {
            sides.Add(state);
        }
        if (fuse2fs)
        {
            sides.Add(await work.StateFsAsync("statefs-fuse2fs", Ext4Driver.Fuse2fs, payload, ct));
        }
        foreach (var s in sides.DistinctBy(s => s.MountPoint))
        {
            await Fio.RunAsync(s, "layout", ["--rw=read", "--bs=1M", $"--size={fileSize}", "--create_only=1"], s.File("read.dat"), ct);
        }

        var jobs = new Job[]
        {
            new("seqread", "sequential read 1 MiB, O_DIRECT", false, 0.5, s => ["--rw=read", "--bs=1M", $"--size={fileSize}", "--direct=1", $"--runtime={seconds}"], "read.dat"),
            new("randread", "random read 4 KiB, O_DIRECT", false, null, s => ["--rw=randread", "--bs=4k", $"--size={fileSize}", "--direct=1", "--time_based", $"--runtime={seconds}"], "read.dat"),
            new("seqwrite", "sequential write 1 MiB, O_DIRECT, fsync at end", true, 0.5, s => ["--rw=write", "--bs=1M", $"--size={fileSize}", "--direct=1", "--end_fsync=1", "--fallocate=none", $"--runtime={seconds}"], "write.dat"),
            new("fsync4k", "random write 4 KiB + fsync each, buffered, 64 MiB range", true, 0.3, s => ["--rw=randwrite", "--bs=4k", "--size=64M", "--direct=0", "--fsync=1", "--time_based", $"--runtime={seconds}"], "read.dat"),
        };
        var results = new Dictionary<(string Job, string Side), Fio.Result>();
        for (var j = 0; j < jobs.Length * rounds; j++)
        {
            var job = jobs[j % jobs.Length];
            // Alternate the order per job so a load change during the run does not always hit the same side first.
            var order = j % 2 == 0 ? sides : Enumerable.Reverse(sides).ToList();
            foreach (var side in order)
            {
                ct.ThrowIfCancellationRequested();
                if (job.Name == "seqwrite")
                {
                    File.Delete(side.File("write.dat"));
                }
                await side.PrepareAsync(ct);
                results[(job.Name, side.Name)] = await Fio.RunAsync(side, job.Name, job.Args(side), side.File(job.File), ct);
            }
            Report(job, sides, results);
        }
        Console.WriteLine($"# load average after fio: {LoadAverage()}");

        if (sides.FirstOrDefault(s => s.Name == "statefs") is { Loop: not null } fuseSide)
        {
            // The FUSE hop alone: fio reads the block file under the loop device directly (reads only — writing it
            // behind ext4's back would corrupt the mounted filesystem).
            await fuseSide.PrepareAsync(ct);
            var seq = await Fio.RunAsync(fuseSide, "fuse-file-seqread", ["--rw=read", "--bs=1M", $"--size={fileSize}", "--direct=1", $"--runtime={seconds}", "--readonly"], fuseSide.FuseFile!, ct);
            await fuseSide.PrepareAsync(ct);
            var rnd = await Fio.RunAsync(fuseSide, "fuse-file-randread", ["--rw=randread", "--bs=4k", $"--size={fileSize}", "--direct=1", "--time_based", $"--runtime={seconds}", "--readonly"], fuseSide.FuseFile!, ct);
            Console.WriteLine($"fuse-file (FUSE block file alone, no loop/ext4): seqread {seq.MBps,8:F1} MB/s  server CPU {seq.CpuPerGiB:F2} s/GiB | randread {rnd.Iops,8:F0} IOPS  server CPU {rnd.CpuPerGiB:F2} s/GiB");
        }

        var xtsSeconds = quick ? 0.5 : 1.0;
        using var xts = new AesXts(RandomNumberGenerator.GetBytes(AesXts.KeySize));
        double enc = 0, dec = 0, openssl = 0;
        for (var round = 0; round < 3; round++)
        {
            openssl = Math.Max(openssl, XtsBenchmark.OpensslXts(xtsSeconds) ?? 0);
            enc = Math.Max(enc, XtsBenchmark.Measure(xts, decrypt: false, xtsSeconds));
            dec = Math.Max(dec, XtsBenchmark.Measure(xts, decrypt: true, xtsSeconds));
        }
        Console.WriteLine(openssl > 0
            ? $"xts {xts.Path}: encrypt {enc / 1e9:F2} GB/s decrypt {dec / 1e9:F2} GB/s, openssl speed aes-256-xts 4096 {openssl / 1e9:F2} GB/s: ratio {enc / openssl:F2} / {dec / openssl:F2} (goal 1.5)"
            : $"xts {xts.Path}: encrypt {enc / 1e9:F2} GB/s decrypt {dec / 1e9:F2} GB/s (openssl not found)");
        Console.WriteLine($"# load average at end: {LoadAverage()}");
    }

    private static void Report(Job job, List<Side> sides, Dictionary<(string Job, string Side), Fio.Result> results)
    {
        var plain = results[(job.Name, sides[0].Name)];
        Console.WriteLine($"{job.Name} ({job.Label}), load {LoadAverage().Split(' ')[0]}:");
        foreach (var side in sides)
        {
            var r = results[(job.Name, side.Name)];
            var ratio = job.Name is "randread" or "fsync4k" ? r.Iops / plain.Iops : r.BytesPerSecond / plain.BytesPerSecond;
            var verdict = side == sides[0] || job.Target is null ? "" : ratio >= job.Target ? $" (target >= {job.Target} met)" : $" (target >= {job.Target} MISSED)";
            var profile = side.Loop is null ? "" : $"  server CPU {r.CpuPerGiB:F2} s/GiB, loop in flight max {r.MaxInFlight} mean {r.MeanInFlight:F1}, loop request {r.LoopRequestKiB:F0} KiB";
            Console.WriteLine($"  {side.Name,-22} {r.MBps,8:F1} MB/s {r.Iops,8:F0} IOPS  clat p50 {r.ClatP50Us,7:F0} us  ratio {ratio,5:F2}{verdict}{profile}");
        }
    }

    private static string LoadAverage() => string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));

    private sealed record Job(string Name, string Label, bool Write, double? Target, Func<Side, string[]> Args, string File);

    /// <summary>One filesystem under test. <see cref="LoopDirectIo"/> (when set) is applied to its loop device before each job.</summary>
    private sealed record Side(string Name, string MountPoint, string Image, string? Loop, string? FuseFile)
    {
        public bool? LoopDirectIo { get; init; }

        public bool IsStateFs { get; init; }

        public string File(string name) => Path.Combine(MountPoint, name);

        /// <summary>
        /// Sets the loop device's direct I/O as this side wants it, then evicts every page cache this side's data could
        /// be read from: the fio files (syncfs, fsync, FADV_DONTNEED) and the image file below the loop device or the
        /// FUSE server. Only our own files: a global sync or drop_caches can hang on another user's dead FUSE mount.
        /// </summary>
        public async Task PrepareAsync(CancellationToken ct)
        {
            if (Loop is not null && LoopDirectIo is { } dio)
            {
                await Tools.CheckedAsync("losetup", ["--direct-io=" + (dio ? "on" : "off"), Loop], ct);
                var actual = System.IO.File.ReadAllText($"/sys/block/{Path.GetFileName(Loop)}/loop/dio").Trim();
                if (actual != (dio ? "1" : "0"))
                {
                    throw new InvalidOperationException($"{Loop}: direct I/O is {actual}, wanted {(dio ? 1 : 0)}");
                }
            }
            await Tools.CheckedAsync("sync", ["-f", MountPoint], ct);
            foreach (var f in new[] { File("read.dat"), File("write.dat"), Image })
            {
                Cache.Evict(f);
            }
        }
    }

    /// <summary>Temp directory, mounts and loop devices of the run, and their teardown.</summary>
    private sealed class Workspace(string root)
    {
        private readonly List<IStateMount> _stateMounts = [];
        private readonly List<string> _plainMounts = [];
        private readonly List<string> _loops = [];

        public async Task<Side> PlainAsync(long size, CancellationToken ct)
        {
            var image = Path.Combine(root, "plain.img");
            using (var f = System.IO.File.Create(image))
            {
                f.SetLength(size);
            }
            await Tools.CheckedAsync("mkfs.ext4", Ext4.MkfsArguments(image), ct);
            var loop = (await Tools.CheckedAsync("losetup", ["-f", "--show", "-b", "4096", image], ct)).Trim();
            _loops.Add(loop);
            var mountPoint = Directory.CreateDirectory(Path.Combine(root, "plain")).FullName;
            await Tools.CheckedAsync("mount", ["-t", "ext4", "-o", "nosuid,nodev", loop, mountPoint], ct);
            _plainMounts.Add(mountPoint);
            return new Side("plain", mountPoint, image, null, null);
        }

        public async Task<Side> StateFsAsync(string name, Ext4Driver driver, long payload, CancellationToken ct)
        {
            var image = Path.Combine(root, name + ".img");
            var passphrase = RandomNumberGenerator.GetBytes(32);
            using (var device = FileBlockDevice.Create(image, Luks2Image.PayloadOffset + payload))
            using (Luks2Image.Format(device, ownsDevice: false, passphrase))
            {
            }
            var request = new StateMountRequest
            {
                ImagePath = image,
                RuntimeDirectory = Path.Combine(root, name + "-run"),
                MountPoint = Path.Combine(root, name),
                FormatIfNoFilesystem = true,
            };
            var mount = await new FuseExt4StateFilesystem(driver).MountAsync(request, passphrase, ct);
            CryptographicOperations.ZeroMemory(passphrase);
            _stateMounts.Add(mount);
            var loop = driver == Ext4Driver.LoopDevice ? mount.BlockPath : null;
            return new Side(name, mount.MountPoint, image, loop, FuseExt4StateFilesystem.BlockFile(request)) { IsStateFs = true };
        }

        /// <summary>Unmounts and detaches everything of the run, deletes its files; returns what is still there.</summary>
        public async Task<List<string>> CleanupAsync()
        {
            var errors = new List<string>();
            foreach (var m in _plainMounts)
            {
                await Try(errors, () => Tools.CheckedAsync("umount", [m], CancellationToken.None));
            }
            foreach (var l in _loops)
            {
                await Try(errors, () => Tools.CheckedAsync("losetup", ["-d", l], CancellationToken.None));
            }
            foreach (var m in _stateMounts)
            {
                await Try(errors, async () => { await m.DisposeAsync(); return ""; });
            }
            // Safety net for a run interrupted half-way through a mount: whatever is still mounted below the
            // directory, deepest first, lazily; loop devices backed by our files found through sysfs (`losetup
            // --list` can hang on another user's stuck loop device, sysfs does not).
            foreach (var m in MountTable.Under(root).OrderByDescending(m => m.MountPoint.Length))
            {
                await Tools.RunAsync("umount", ["-l", m.MountPoint], CancellationToken.None);
            }
            foreach (var loop in LoopsBackedBy(root))
            {
                await Tools.RunAsync("losetup", ["-d", loop], CancellationToken.None);
            }
            var left = MountTable.Under(root).Select(m => $"mount {m.MountPoint}").Concat(LoopsBackedBy(root).Select(l => $"loop {l}")).ToList();
            if (left.Count == 0)
            {
                await Try(errors, () => { Directory.Delete(root, recursive: true); return Task.FromResult(""); });
            }
            else
            {
                left.Add($"directory {root}");
            }
            foreach (var e in errors)
            {
                Console.Error.WriteLine($"cleanup: {e}");
            }
            return left;
        }

        private static IEnumerable<string> LoopsBackedBy(string directory)
        {
            foreach (var d in Directory.EnumerateDirectories("/sys/block", "loop*"))
            {
                var backing = Path.Combine(d, "loop", "backing_file");
                string file;
                try
                {
                    file = System.IO.File.ReadAllText(backing).Trim();
                }
                catch (IOException)
                {
                    continue;
                }
                if (file.StartsWith(directory + "/", StringComparison.Ordinal))
                {
                    yield return "/dev/" + Path.GetFileName(d);
                }
            }
        }

        private static async Task Try(List<string> errors, Func<Task<string>> action)
        {
            try
            {
                await action();
            }
            catch (Exception e)
            {
                errors.Add(e.Message);
            }
        }
    }

    /// <summary>fio as a child process, JSON output, plus what the run cost our process (the FUSE server) and the loop device's figures.</summary>
    private static class Fio
    {
        public sealed record Result(double BytesPerSecond, double Iops, double ClatP50Us, double CpuPerGiB, int MaxInFlight, double MeanInFlight, double LoopRequestKiB)
        {
            public double MBps => BytesPerSecond / 1e6;
        }

        public static string Version() => Tools.RunAsync("fio", ["--version"], CancellationToken.None).GetAwaiter().GetResult().Stdout.Trim();

        public static async Task<Result> RunAsync(Side side, string name, string[] jobArgs, string file, CancellationToken ct)
        {
            string[] args = ["--name=" + name, "--filename=" + file, "--ioengine=psync", "--numjobs=1", "--output-format=json", .. jobArgs];
            var loopName = side.Loop is null ? null : Path.GetFileName(side.Loop);
            var statBefore = loopName is null ? null : LoopStat(loopName);
            var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            using var sampling = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var sampler = loopName is null ? Task.FromResult((0, 0.0)) : SampleInFlightAsync(loopName, sampling.Token);
            CommandResult run;
            try
            {
                run = await Tools.RunAsync("fio", args, ct);
            }
            finally
            {
                sampling.Cancel();
            }
            var (maxInFlight, meanInFlight) = await sampler;
            var cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalSeconds;
            if (run.ExitCode != 0)
            {
                throw new InvalidOperationException($"fio {name} on {side.Name} failed (exit {run.ExitCode}): {run.Stderr.Trim()}");
            }
            using var json = JsonDocument.Parse(run.Stdout[run.Stdout.IndexOf('{', StringComparison.Ordinal)..]);
            var jobJson = json.RootElement.GetProperty("jobs")[0];
            if (jobJson.GetProperty("error").GetInt32() != 0)
            {
                throw new InvalidOperationException($"fio {name} on {side.Name}: error {jobJson.GetProperty("error").GetInt32()}");
            }
            var read = jobJson.GetProperty("read");
            var write = jobJson.GetProperty("write");
            var dir = write.GetProperty("io_bytes").GetInt64() > read.GetProperty("io_bytes").GetInt64() ? write : read;
            var bytes = dir.GetProperty("io_bytes").GetDouble();
            double p50 = 0;
            if (dir.GetProperty("clat_ns").TryGetProperty("percentile", out var pct) && pct.TryGetProperty("50.000000", out var v))
            {
                p50 = v.GetDouble() / 1000;
            }
            var loopKiB = 0.0;
            if (loopName is not null && statBefore is not null)
            {
                var after = LoopStat(loopName);
                var ios = after[0] - statBefore[0] + (after[4] - statBefore[4]);
                var sectors = after[2] - statBefore[2] + (after[6] - statBefore[6]);
                loopKiB = ios == 0 ? 0 : sectors * 512.0 / ios / 1024;
            }
            return new Result(dir.GetProperty("bw_bytes").GetDouble(), dir.GetProperty("iops").GetDouble(), p50,
                bytes == 0 ? 0 : cpu / (bytes / (1024.0 * MiB)), maxInFlight, meanInFlight, loopKiB);
        }

        private static long[] LoopStat(string loop) =>
            File.ReadAllText($"/sys/block/{loop}/stat").Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToArray();

        /// <summary>Requests in flight at the loop device (the queue the FUSE server sees), sampled every 5 ms.</summary>
        private static async Task<(int Max, double Mean)> SampleInFlightAsync(string loop, CancellationToken ct)
        {
            int max = 0, samples = 0;
            long sum = 0;
            var path = $"/sys/block/{loop}/inflight";
            while (!ct.IsCancellationRequested)
            {
                var n = File.ReadAllText(path).Split(' ', StringSplitOptions.RemoveEmptyEntries).Sum(int.Parse);
                max = Math.Max(max, n);
                sum += n;
                samples++;
                try
                {
                    await Task.Delay(5, ct);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
            return (max, samples == 0 ? 0 : (double)sum / samples);
        }
    }

    private static class Tools
    {
        public static async Task<CommandResult> RunAsync(string program, IReadOnlyList<string> args, CancellationToken ct)
        {
            var psi = new ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
            foreach (var a in args)
            {
                psi.ArgumentList.Add(a);
            }
            psi.Environment["LC_ALL"] = "C";
            using var p = Process.Start(psi) ?? throw new InvalidOperationException($"{program} did not start");
            p.StandardInput.Close();
            var stdout = p.StandardOutput.ReadToEndAsync(CancellationToken.None);
            var stderr = p.StandardError.ReadToEndAsync(CancellationToken.None);
            try
            {
                await p.WaitForExitAsync(ct);
            }
            catch (OperationCanceledException)
            {
                p.Kill(entireProcessTree: true);
                await p.WaitForExitAsync(CancellationToken.None);
                throw;
            }
            return new CommandResult(p.ExitCode, await stdout, await stderr);
        }

        public static async Task<string> CheckedAsync(string program, IReadOnlyList<string> args, CancellationToken ct)
        {
            var r = await RunAsync(program, args, ct);
            return r.ExitCode == 0 ? r.Stdout : throw new InvalidOperationException($"{program} {string.Join(' ', args)} failed (exit {r.ExitCode}): {r.Stderr.Trim()}");
        }
    }

    /// <summary>Drops one file's pages from the page cache: fsync, then POSIX_FADV_DONTNEED (only clean pages go).</summary>
    private static partial class Cache
    {
        private const int FadviseDontNeed = 4;

        public static void Evict(string path)
        {
            if (!System.IO.File.Exists(path))
            {
                return;
            }
            using var handle = System.IO.File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            var fd = (int)handle.DangerousGetHandle();
            if (fsync(fd) != 0 || posix_fadvise(fd, 0, 0, FadviseDontNeed) != 0)
            {
                throw new IOException($"cannot evict {path} from the page cache (errno {Marshal.GetLastPInvokeError()})");
            }
        }

        [LibraryImport("libc", SetLastError = true)]
        private static partial int fsync(int fd);

        [LibraryImport("libc")]
        private static partial int posix_fadvise(int fd, long offset, long length, int advice);
    }
}
