using System.Runtime.InteropServices;

namespace Asterism.Cloud.Local;

/// <summary>Sends POSIX signals (.NET's Process.Kill only knows SIGKILL).</summary>
internal static partial class ProcessSignals
{
    public const int SigTerm = 15;
    public const int SigKill = 9;

    /// <summary>True when the signal was delivered.</summary>
    public static bool Send(int pid, int signal) => pid > 0 && Kill(pid, signal) == 0;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int sig);
}
