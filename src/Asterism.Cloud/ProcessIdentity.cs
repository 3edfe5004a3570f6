using System.Globalization;
using System.Runtime.InteropServices;

namespace Asterism.Cloud;

/// <summary>
/// A process named by its PID and its start time (clock ticks since boot, field 22 of <c>/proc/PID/stat</c>): a PID
/// recorded in a file may have been reused by an unrelated process since, the pair cannot. Signals go through a
/// pidfd opened before the start time is checked, so the process checked is the process signalled (Linux). Only
/// processes of this very user (real, effective, saved and filesystem uid all ours) have an identity: another user's
/// process — one that took a recorded PID, imitates a node's command line, or is a setuid program started with one —
/// is never adopted, waited for or signalled, even when this process runs as root.
/// </summary>
public readonly partial record struct ProcessIdentity(int Pid, ulong StartTicks)
{
    public const int SigTerm = 15;
    public const int SigKill = 9;

    /// <summary>
    /// The identity of the live (non-zombie) process <paramref name="pid"/> of this user, or null when there is none or
    /// it belongs to (or runs with the rights of) another user.
    /// </summary>
    public static ProcessIdentity? Of(int pid)
    {
        if (pid <= 0)
        {
            return null;
        }
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            // comm (field 2) may hold spaces and parentheses: the fields after it start behind the last ')'.
            var after = stat.LastIndexOf(')');
            var fields = after > 0 && after + 2 < stat.Length ? stat[(after + 2)..].Split(' ') : [];
            // fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
            if (fields.Length < 20 || fields[0] == "Z" || fields[0] == "X"
                || !ulong.TryParse(fields[19], NumberStyles.None, CultureInfo.InvariantCulture, out var ticks))
            {
                return null;
            }
            return IsOurs(pid) ? new ProcessIdentity(pid, ticks) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Whether this very process still runs (same PID and the same start time).</summary>
    public bool IsRunning => Of(Pid) is { } now && now.StartTicks == StartTicks;

    /// <summary>The command line with NULs as spaces ("" when unreadable or gone).</summary>
    public string CommandLine()
    {
        try
        {
            return File.ReadAllText($"/proc/{Pid}/cmdline").Replace('\0', ' ');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }

    /// <summary>Sends <paramref name="signal"/> to this process only: false when it is gone or the PID now names another one.</summary>
    public bool Signal(int signal)
    {
        var fd = PidfdOpen(Pid, 0);
        if (fd < 0)
        {
            return false;
        }
        try
        {
            // Checked after the pidfd pins the process: a PID reused in between fails this check.
            return IsRunning && PidfdSendSignal(fd, signal, IntPtr.Zero, 0) == 0;
        }
        finally
        {
            Close(fd);
        }
    }

    /// <summary>Waits (polling) until this process is gone; false when it still runs at the deadline.</summary>
    public async Task<bool> WaitGoneAsync(TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        var start = time.GetTimestamp();
        while (IsRunning)
        {
            if (time.GetElapsedTime(start) >= timeout)
            {
                return false;
            }
            await Task.Delay(TimeSpan.FromMilliseconds(20), time, cancellationToken).ConfigureAwait(false);
        }
        return true;
    }

    /// <summary>"PID STARTTICKS[ EXTRA]": what <see cref="ReadPidFile"/> reads back.</summary>
    public string ToPidFileLine(string? extra = null) =>
        string.Create(CultureInfo.InvariantCulture, $"{Pid} {StartTicks}{(extra is null ? "" : " " + extra)}\n");

    /// <summary>
    /// Reads a PID file: "PID STARTTICKS[ EXTRA]" written by <see cref="ToPidFileLine"/>, or a bare PID (swtpm's own
    /// file, older node.pid files), whose start time is then the current process's (the caller checks the command
    /// line). Null when the file is missing or malformed, or no such process runs.
    /// </summary>
    public static ProcessIdentity? ReadPidFile(string path, out string? extra)
    {
        extra = null;
        string text;
        try
        {
            using var stream = File.OpenRead(path);
            var buffer = new byte[256];
            text = System.Text.Encoding.ASCII.GetString(buffer, 0, stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        var parts = text.Trim().Split(' ', 3);
        if (!int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || Of(pid) is not { } live)
        {
            return null;
        }
        if (parts.Length == 1)
        {
            return live;
        }
        if (!ulong.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var ticks) || ticks != live.StartTicks)
        {
            return null;
        }
        extra = parts.Length > 2 ? parts[2] : null;
        return live;
    }

    private static readonly uint OurUid = GetEuid();

    // All four uids of /proc/PID/status: a setuid program run by another user keeps that user's real uid.
    private static bool IsOurs(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("Uid:", StringComparison.Ordinal))
            {
                var ids = line[4..].Split(['\t', ' '], StringSplitOptions.RemoveEmptyEntries);
                return ids.Length == 4 && ids.All(id => uint.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out var uid) && uid == OurUid);
            }
        }
        return false;
    }

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEuid();

    [LibraryImport("libc", EntryPoint = "pidfd_open", SetLastError = true)]
    private static partial int PidfdOpen(int pid, uint flags);

    [LibraryImport("libc", EntryPoint = "pidfd_send_signal", SetLastError = true)]
    private static partial int PidfdSendSignal(int pidfd, int sig, IntPtr info, uint flags);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
