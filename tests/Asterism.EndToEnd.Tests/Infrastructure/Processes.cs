using System.Diagnostics;
using Asterism.Tests;

namespace Asterism.EndToEnd.Tests.Infrastructure;

/// <summary>Processes found through /proc by a fragment of their command line (Linux).</summary>
public static class Processes
{
    public sealed record Info(int Pid, string CommandLine);

    /// <summary>Live (non-zombie) processes, other than this one, whose command line contains <paramref name="fragment"/>.</summary>
    public static IReadOnlyList<Info> Matching(string fragment)
    {
        var found = new List<Info>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == Environment.ProcessId)
            {
                continue;
            }
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
                if (cmdline.Contains(fragment, StringComparison.Ordinal) && IsAlive(pid))
                {
                    found.Add(new Info(pid, cmdline.Trim()));
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The process ended while we looked.
            }
        }
        return found;
    }

    public static bool IsAlive(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var afterComm = stat.LastIndexOf(')');
            return afterComm > 0 && afterComm + 2 < stat.Length && stat[afterComm + 2] != 'Z';
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>SIGKILL by PID (never by name).</summary>
    public static void Kill(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            process.Kill();
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            // Already gone.
        }
    }

    /// <summary>Kills every process whose command line contains the fragment and waits until none is left.</summary>
    public static async Task<IReadOnlyList<Info>> KillMatchingAsync(string fragment, TimeSpan timeout)
    {
        var killed = Matching(fragment);
        foreach (var p in killed)
        {
            Kill(p.Pid);
        }
        await WaitGoneAsync(fragment, timeout);
        return killed;
    }

    /// <summary>Waits until no process matches; returns the ones still alive at the deadline.</summary>
    public static async Task<IReadOnlyList<Info>> WaitGoneAsync(string fragment, TimeSpan timeout)
    {
        var (left, _) = await Poll.UntilAsync(() => Task.FromResult(Matching(fragment)), l => l.Count == 0, timeout, TimeSpan.FromMilliseconds(100));
        return left;
    }
}
