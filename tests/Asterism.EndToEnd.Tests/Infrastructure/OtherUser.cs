using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Asterism.EndToEnd.Tests.Infrastructure;

/// <summary>
/// Runs commands as another local user (nobody:nogroup, no supplementary groups) through setpriv: the attacker of
/// issue 12, a local account without access to the operator's workspace. Needs root to switch users.
/// </summary>
public static partial class OtherUser
{
    public const string User = "nobody";
    public const string Group = "nogroup";

    public static bool CanSwitch => geteuid() == 0;

    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Stdout}--- stderr\n{Stderr}---";
    }

    /// <summary>Runs <paramref name="command"/> as nobody with the given environment additions; waits for it to exit.</summary>
    public static async Task<Result> RunAsync(IReadOnlyList<string> command, IReadOnlyDictionary<string, string>? environment = null, TimeSpan? timeout = null)
    {
        var psi = new ProcessStartInfo("setpriv") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in new[] { $"--reuid={User}", $"--regid={Group}", "--clear-groups" }.Concat(command))
        {
            psi.ArgumentList.Add(a);
        }
        foreach (var (k, v) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[k] = v;
        }
        using var process = Process.Start(psi) ?? throw new InvalidOperationException("setpriv did not start");
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(3));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        return new Result(process.ExitCode, await stdout, await stderr);
    }

    /// <summary>True when nobody can read the whole file (cat succeeds).</summary>
    public static async Task<Result> CatAsync(string path) => await RunAsync(["cat", path]);

    [LibraryImport("libc")]
    private static partial uint geteuid();
}

/// <summary>A fact that needs root (it switches to another user with setpriv); skipped with that reason otherwise.</summary>
public sealed class RootFactAttribute : FactAttribute
{
    public RootFactAttribute()
    {
        if (!OtherUser.CanSwitch)
        {
            Skip = "needs root: the attack runs as another local user (setpriv --reuid=nobody), which only root can switch to";
        }
    }
}

/// <summary>Entries under a directory that group or others have any permission on.</summary>
public static class FileModes
{
    public const UnixFileMode GroupOrOther =
        UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute |
        UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    public static IReadOnlyList<string> OpenToOthers(string root, bool includeRoot = true)
    {
        var open = new List<string>();
        var entries = Directory.EnumerateFileSystemEntries(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 });
        foreach (var path in includeRoot ? entries.Prepend(root) : entries)
        {
            UnixFileMode mode;
            try
            {
                if (new FileInfo(path).LinkTarget is not null)
                {
                    continue;
                }
                mode = File.GetUnixFileMode(path);
            }
            catch (UnauthorizedAccessException)
            {
                // Another user's FUSE mount without allow_other (a node run as nobody): the kernel refuses even root
                // a stat, so nobody else can reach it either.
                continue;
            }
            if ((mode & GroupOrOther) != 0)
            {
                open.Add($"{path} {Convert.ToString((int)mode, 8)}");
            }
        }
        return open;
    }

    public static IReadOnlyList<string> Directories(string root) =>
        [root, .. Directory.EnumerateDirectories(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 })];
}
