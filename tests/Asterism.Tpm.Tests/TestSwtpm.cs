using System.Diagnostics;

namespace Asterism.Tpm.Tests;

/// <summary>A swtpm in its own temporary state directory, stopped and removed when disposed.</summary>
public sealed class TestSwtpm : IAsyncDisposable
{
    private TestSwtpm(string directory, SwtpmProcess process)
    {
        Directory = directory;
        Process = process;
    }

    public string Directory { get; }

    public SwtpmProcess Process { get; private set; }

    public static async Task<TestSwtpm> StartAsync(string? directory = null)
    {
        directory ??= System.IO.Directory.CreateTempSubdirectory("asterism-swtpm-").FullName;
        var process = await SwtpmProcess.StartAsync(Path.Combine(directory, "state"), CancellationToken.None);
        return new TestSwtpm(directory, process);
    }

    /// <summary>Stops swtpm cleanly and starts a new one on the same state (a machine power cycle with orderly shutdown).</summary>
    public async Task RestartAsync()
    {
        await Process.StopAsync(CancellationToken.None);
        await Process.DisposeAsync();
        Process = await SwtpmProcess.StartAsync(Path.Combine(Directory, "state"), CancellationToken.None);
    }

    public Task<TpmClient> ConnectAsync() => Process.ConnectAsync(null, CancellationToken.None);

    public string PathOf(string name) => Path.Combine(Directory, name);

    public async ValueTask DisposeAsync()
    {
        await Process.DisposeAsync();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>Runs tpm2-tools against a swtpm TCTI.</summary>
public static class Tpm2Tools
{
    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(string? tcti, string tool, params string[] args)
    {
        var exe = SwtpmProcess.FindExecutable(tool)
            ?? throw new InvalidOperationException($"{tool} is not installed: install the tpm2-tools package (apt-get install -y tpm2-tools)");
        var psi = new ProcessStartInfo(exe)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        if (tcti is not null)
        {
            psi.Environment["TPM2TOOLS_TCTI"] = tcti;
        }
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, await stdout, await stderr);
    }

    public static async Task<string> RunOkAsync(string? tcti, string tool, params string[] args)
    {
        var (code, stdout, stderr) = await RunAsync(tcti, tool, args);
        Assert.True(code == 0, $"{tool} {string.Join(' ', args)} exited {code}: {stderr}");
        return stdout;
    }
}
