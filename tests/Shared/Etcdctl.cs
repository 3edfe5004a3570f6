using System.Diagnostics;

namespace Asterism.Tests;

/// <summary>
/// The one way tests run <c>etcdctl</c> (linked into each project that edits or reads etcd behind the code's back, as
/// an attacker with a client certificate would): v3 API, the given endpoints and client TLS files, a command timeout.
/// How etcdctl authenticates is decided here only, so a change of the client credentials is one edit.
/// </summary>
public static class Etcdctl
{
    /// <summary>
    /// Runs <c>etcdctl</c> against <paramref name="endpoints"/> with the client certificate <paramref name="certificatePath"/>
    /// and key <paramref name="keyPath"/>, trusting <paramref name="caPath"/>; returns the exit code and stdout + stderr.
    /// Arguments in <paramref name="args"/> come after the connection flags, so a test may override them (a later
    /// <c>--cert</c> wins).
    /// </summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(IEnumerable<string> endpoints, string caPath, string certificatePath, string keyPath, params string[] args)
    {
        var psi = new ProcessStartInfo("etcdctl") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.Environment["ETCDCTL_API"] = "3";
        foreach (var a in new[]
        {
            "--endpoints", string.Join(',', endpoints.Select(u => u.TrimEnd('/'))),
            "--cacert", caPath, "--cert", certificatePath, "--key", keyPath,
            "--command-timeout", "10s",
        }.Concat(args))
        {
            psi.ArgumentList.Add(a);
        }
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await stdout + await stderr);
    }
}
