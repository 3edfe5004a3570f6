using System.Diagnostics;

namespace Asterism.Secrets.Tests;

/// <summary>Runs the real age tools (Debian package age; test.sh installs it) with a temporary working directory.</summary>
internal sealed class AgeTool : IDisposable
{
    public AgeTool()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("asterism-age-").FullName;
    }

    public string Directory { get; }

    public string PathOf(string name) => Path.Combine(Directory, name);

    public (int ExitCode, byte[] Stdout, string Stderr) Run(string tool, params string[] args)
    {
        var start = new ProcessStartInfo(Locate(tool)) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Directory };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start)!;
        using var stdout = new MemoryStream();
        var stderr = process.StandardError.ReadToEndAsync();
        process.StandardOutput.BaseStream.CopyTo(stdout);
        process.WaitForExit();
        return (process.ExitCode, stdout.ToArray(), stderr.Result);
    }

    private static string Locate(string tool)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':'))
        {
            var candidate = Path.Combine(dir, tool);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        throw new InvalidOperationException($"{tool} is not installed (Debian package age); run test.sh as root or apt-get install age");
    }

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
}
