using System.ComponentModel;
using System.Diagnostics;

namespace Asterism.StateFs;

/// <summary>Result of an external command.</summary>
/// <param name="ExitCode">Exit status.</param>
/// <param name="Stdout">Standard output.</param>
/// <param name="Stderr">Standard error.</param>
public sealed record CommandResult(int ExitCode, string Stdout, string Stderr);

/// <summary>Runs the system tools (losetup, mount, mkfs.ext4, fuse2fs, cryptsetup); secrets only ever go to stdin.</summary>
internal static class CommandRunner
{
    public static async Task<CommandResult> RunAsync(string program, IReadOnlyList<string> args, ReadOnlyMemory<byte> stdin, CancellationToken cancellationToken)
    {
        var psi = new ProcessStartInfo(program)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["LC_ALL"] = "C";
        psi.Environment["PATH"] = Environment.GetEnvironmentVariable("PATH") + ":/usr/sbin:/sbin";
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new StateFilesystemException(StateFilesystemError.ToolMissing, $"{program} did not start.");
        }
        catch (Win32Exception e)
        {
            throw new StateFilesystemException(StateFilesystemError.ToolMissing, $"Cannot run {program}: {e.Message}.");
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
            var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
            if (!stdin.IsEmpty)
            {
                await process.StandardInput.BaseStream.WriteAsync(stdin, cancellationToken);
            }
            process.StandardInput.Close();
            try
            {
                await process.WaitForExitAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                throw;
            }
            return new CommandResult(process.ExitCode, await stdout, await stderr);
        }
    }

    public static async Task<string> CheckedAsync(string program, IReadOnlyList<string> args, CancellationToken cancellationToken, ReadOnlyMemory<byte> stdin = default)
    {
        var r = await RunAsync(program, args, stdin, cancellationToken);
        if (r.ExitCode != 0)
        {
            throw new StateFilesystemException(StateFilesystemError.ToolFailed,
                $"{program} {string.Join(' ', args)} failed (exit {r.ExitCode}): {r.Stderr.Trim()}");
        }
        return r.Stdout;
    }
}
