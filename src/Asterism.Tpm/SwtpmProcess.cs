using System.Diagnostics;
using System.Net.Sockets;

namespace Asterism.Tpm;

/// <summary>
/// Runs one swtpm (TPM 2.0, socket mode) on Unix sockets <c>DIR/tpm.sock</c> (commands) and <c>DIR/tpm.sock.ctrl</c>
/// (control), state in DIR with files 0600; DIR is made 0700, so only the owning account can reach the TPM (no TCP
/// port another local user could dial). The child process is kept (no <c>-d</c>) so it is stopped by its own PID.
/// Stopping is orderly: TPM2_Shutdown(CLEAR), then the control channel's CMD_SHUTDOWN, so the TPM's
/// dictionary-attack counter does not grow (three unclean stops make DA-protected keys fail with 0x921).
/// swtpm serves one command connection at a time: reset and stop need no client connected.
/// </summary>
public sealed class SwtpmProcess : IAsyncDisposable
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(5);

    /// <summary>File name of the command socket; the control socket is the same name plus <c>.ctrl</c>.</summary>
    public const string SocketFileName = "tpm.sock";

    private readonly Process _process;
    private readonly string? _ownedSocketDirectory;
    private bool _stopped;

    private SwtpmProcess(Process process, string stateDirectory, string socketPath, string? ownedSocketDirectory)
    {
        _process = process;
        StateDirectory = stateDirectory;
        SocketPath = socketPath;
        ControlSocketPath = SwtpmControl.ControlPathOf(socketPath);
        _ownedSocketDirectory = ownedSocketDirectory;
    }

    public string StateDirectory { get; }

    /// <summary>The command socket (absolute path) the node is given.</summary>
    public string SocketPath { get; }

    public string ControlSocketPath { get; }

    public int ProcessId => _process.Id;

    /// <summary>The TCTI string for tpm2-tools (the TCTI finds the control socket at <c>SOCK.ctrl</c>).</summary>
    public string Tcti => $"swtpm:path={SocketPath}";

    public bool HasExited => _process.HasExited;

    /// <summary>
    /// Starts swtpm with its state and sockets in <paramref name="stateDirectory"/> (created or tightened to 0700) and
    /// waits until its control socket answers. When that path is too long for a Unix socket, the sockets go to a
    /// fresh private 0700 directory under the temp directory instead, removed again when this process is disposed.
    /// </summary>
    public static async Task<SwtpmProcess> StartAsync(string stateDirectory, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(stateDirectory);
        var executable = FindExecutable("swtpm")
            ?? throw new TpmException("swtpm is not installed: install the packages swtpm and swtpm-tools (apt-get install -y swtpm swtpm-tools)");
        stateDirectory = Path.GetFullPath(stateDirectory);
        CreatePrivateDirectory(stateDirectory);
        string? ownedSocketDirectory = null;
        var socketPath = Path.Combine(stateDirectory, SocketFileName);
        if (System.Text.Encoding.UTF8.GetByteCount(SwtpmControl.ControlPathOf(socketPath)) > SwtpmSocketTransport.MaxSocketPathLength)
        {
            ownedSocketDirectory = Directory.CreateTempSubdirectory("asterism-tpm-").FullName; // 0700 on Unix
            socketPath = Path.Combine(ownedSocketDirectory, SocketFileName);
        }
        for (var attempt = 0; ; attempt++)
        {
            DeleteStaleSocket(socketPath);
            DeleteStaleSocket(SwtpmControl.ControlPathOf(socketPath));
            var psi = new ProcessStartInfo(executable)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            foreach (var a in new[]
            {
                "socket", "--tpm2",
                "--server", $"type=unixio,path={socketPath}",
                "--ctrl", $"type=unixio,path={SwtpmControl.ControlPathOf(socketPath)}",
                "--tpmstate", $"dir={stateDirectory},mode=0600",
                "--flags", "not-need-init,startup-clear",
                "--pid", $"file={Path.Combine(stateDirectory, "swtpm.pid")}",
            })
            {
                psi.ArgumentList.Add(a);
            }
            var process = Process.Start(psi) ?? throw new TpmException("swtpm did not start");
            var stderr = new System.Text.StringBuilder();
            process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is not null)
                {
                    lock (stderr)
                    {
                        stderr.AppendLine(e.Data);
                    }
                }
            };
            process.OutputDataReceived += (_, _) => { };
            process.BeginErrorReadLine();
            process.BeginOutputReadLine();
            var swtpm = new SwtpmProcess(process, stateDirectory, socketPath, ownedSocketDirectory);
            try
            {
                await swtpm.WaitReadyAsync(cancellationToken).ConfigureAwait(false);
                return swtpm;
            }
            catch (TpmException) when (attempt < 2 && process.HasExited)
            {
                // E.g. a stale lock from a killed predecessor: one more try after clearing the sockets.
                process.Dispose();
            }
            catch (Exception e) when (e is TpmException or OperationCanceledException)
            {
                swtpm.Kill();
                process.Dispose();
                swtpm.RemoveOwnedSocketDirectory();
                string log;
                lock (stderr)
                {
                    log = stderr.ToString().Trim();
                }
                throw e is OperationCanceledException ? e : new TpmException($"swtpm did not become ready: {e.Message} {log}", e);
            }
        }
    }

    /// <summary>Connects a client to the command socket.</summary>
    public Task<TpmClient> ConnectAsync(TpmClientOptions? options, CancellationToken cancellationToken) =>
        TpmClient.ConnectSwtpmAsync(SocketPath, options, cancellationToken);

    /// <summary>
    /// Reboots the TPM: orderly TPM2_Shutdown(CLEAR), TPM_Init over the control channel, TPM2_Startup(CLEAR).
    /// PCRs return to zero; persistent state (seeds, hence primary keys) stays.
    /// </summary>
    public async Task ResetAsync(CancellationToken cancellationToken)
    {
        await OrderlyShutdownAsync(cancellationToken).ConfigureAwait(false);
        await SwtpmControl.InitAsync(ControlSocketPath, cancellationToken).ConfigureAwait(false);
        await using var client = await ConnectAsync(null, cancellationToken).ConfigureAwait(false);
        await client.StartupAsync(TpmStartupType.Clear, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Orderly stop: TPM2_Shutdown(CLEAR), CMD_SHUTDOWN, wait for exit; kills by PID only as a last resort.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_stopped)
        {
            return;
        }
        _stopped = true;
        if (_process.HasExited)
        {
            return;
        }
        try
        {
            await OrderlyShutdownAsync(cancellationToken).ConfigureAwait(false);
            await SwtpmControl.ShutdownAsync(ControlSocketPath, cancellationToken).ConfigureAwait(false);
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            wait.CancelAfter(StopTimeout);
            await _process.WaitForExitAsync(wait.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TpmException or OperationCanceledException)
        {
            Kill();
            if (e is OperationCanceledException && cancellationToken.IsCancellationRequested)
            {
                throw;
            }
            throw new TpmException("swtpm did not stop cleanly and was killed: " + e.Message, e);
        }
    }

    /// <summary>Kills swtpm without TPM2_Shutdown, like a power loss (counts against the dictionary-attack lockout).</summary>
    public async Task KillAsync()
    {
        _stopped = true;
        Kill();
        await _process.WaitForExitAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (TpmException)
        {
            // Already killed by StopAsync.
        }
        _process.Dispose();
        RemoveOwnedSocketDirectory();
    }

    private async Task OrderlyShutdownAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(StopTimeout);
        try
        {
            await using var client = await ConnectAsync(null, timeout.Token).ConfigureAwait(false);
            await client.ShutdownAsync(TpmStartupType.Clear, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TpmException("TPM2_Shutdown timed out (is another client connected to swtpm?)");
        }
    }

    private async Task WaitReadyAsync(CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + ReadyTimeout;
        while (true)
        {
            if (_process.HasExited)
            {
                throw new TpmException($"swtpm exited with code {_process.ExitCode}");
            }
            try
            {
                using var socket = await SwtpmSocketTransport.ConnectUnixAsync(ControlSocketPath, cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (TpmException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(5, cancellationToken).ConfigureAwait(false);
            }
            catch (TpmException e)
            {
                throw new TpmException("swtpm control socket did not open", e);
            }
        }
    }

    private void Kill()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
            }
        }
        catch (InvalidOperationException)
        {
            // Exited meanwhile.
        }
    }

    /// <summary>Creates <paramref name="path"/> if needed and makes it 0700: the sockets inside are the TPM's only door.</summary>
    internal static void CreatePrivateDirectory(string path)
    {
        Directory.CreateDirectory(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    private static void DeleteStaleSocket(string path)
    {
        // A socket file left by a killed swtpm makes bind() fail with EADDRINUSE.
        if (File.Exists(path) && (File.GetAttributes(path) & FileAttributes.Directory) == 0)
        {
            File.Delete(path);
        }
    }

    private void RemoveOwnedSocketDirectory()
    {
        if (_ownedSocketDirectory is null)
        {
            return;
        }
        try
        {
            Directory.Delete(_ownedSocketDirectory, recursive: true);
        }
        catch (IOException)
        {
            // Left behind in the temp directory; it is private (0700) and holds only dead sockets.
        }
    }

    internal static string? FindExecutable(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }
}
