using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Asterism.Tpm;

/// <summary>
/// Runs one swtpm (TPM 2.0, socket mode) on 127.0.0.1 with a command port P and control port P+1, state in a
/// directory the caller owns. The child process is kept (no <c>-d</c>) so it is stopped by its own PID.
/// Stopping is orderly: TPM2_Shutdown(CLEAR), then the control channel's CMD_SHUTDOWN, so the TPM's
/// dictionary-attack counter does not grow (three unclean stops make DA-protected keys fail with 0x921).
/// swtpm serves one command connection at a time: reset and stop need no client connected.
/// </summary>
public sealed class SwtpmProcess : IAsyncDisposable
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(5);

    private readonly Process _process;
    private bool _stopped;

    private SwtpmProcess(Process process, string stateDirectory, int port)
    {
        _process = process;
        StateDirectory = stateDirectory;
        CommandEndpoint = new IPEndPoint(IPAddress.Loopback, port);
        ControlEndpoint = new IPEndPoint(IPAddress.Loopback, port + 1);
    }

    public string StateDirectory { get; }

    public IPEndPoint CommandEndpoint { get; }

    public IPEndPoint ControlEndpoint { get; }

    public int ProcessId => _process.Id;

    /// <summary>The TCTI string for tpm2-tools.</summary>
    public string Tcti => $"swtpm:host=127.0.0.1,port={CommandEndpoint.Port}";

    public bool HasExited => _process.HasExited;

    /// <summary>Starts swtpm on free loopback ports and waits until its control port answers.</summary>
    public static async Task<SwtpmProcess> StartAsync(string stateDirectory, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(stateDirectory);
        var executable = FindExecutable("swtpm")
            ?? throw new TpmException("swtpm is not installed: install the packages swtpm and swtpm-tools (apt-get install -y swtpm swtpm-tools)");
        Directory.CreateDirectory(stateDirectory);
        for (var attempt = 0; ; attempt++)
        {
            var port = FindFreePortPair();
            var psi = new ProcessStartInfo(executable)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            foreach (var a in new[]
            {
                "socket", "--tpm2",
                "--server", $"type=tcp,port={port},bindaddr=127.0.0.1",
                "--ctrl", $"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                "--tpmstate", $"dir={stateDirectory}",
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
            var swtpm = new SwtpmProcess(process, stateDirectory, port);
            try
            {
                await swtpm.WaitReadyAsync(cancellationToken).ConfigureAwait(false);
                return swtpm;
            }
            catch (TpmException) when (attempt < 4 && process.HasExited)
            {
                // Most likely a port taken between probing and binding: try other ports.
                process.Dispose();
            }
            catch (Exception e) when (e is TpmException or OperationCanceledException)
            {
                swtpm.Kill();
                process.Dispose();
                string log;
                lock (stderr)
                {
                    log = stderr.ToString().Trim();
                }
                throw e is OperationCanceledException ? e : new TpmException($"swtpm did not become ready: {e.Message} {log}", e);
            }
        }
    }

    /// <summary>Connects a client to the command port.</summary>
    public Task<TpmClient> ConnectAsync(TpmClientOptions? options, CancellationToken cancellationToken) =>
        TpmClient.ConnectSwtpmAsync(CommandEndpoint, options, cancellationToken);

    /// <summary>
    /// Reboots the TPM: orderly TPM2_Shutdown(CLEAR), TPM_Init over the control channel, TPM2_Startup(CLEAR).
    /// PCRs return to zero; persistent state (seeds, hence primary keys) stays.
    /// </summary>
    public async Task ResetAsync(CancellationToken cancellationToken)
    {
        await OrderlyShutdownAsync(cancellationToken).ConfigureAwait(false);
        await SwtpmControl.InitAsync(ControlEndpoint, cancellationToken).ConfigureAwait(false);
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
            await SwtpmControl.ShutdownAsync(ControlEndpoint, cancellationToken).ConfigureAwait(false);
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
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await socket.ConnectAsync(ControlEndpoint, cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(5, cancellationToken).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                throw new TpmException("swtpm control port did not open", e);
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

    private static int FindFreePortPair()
    {
        for (var i = 0; i < 50; i++)
        {
            using var first = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            first.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            var port = ((IPEndPoint)first.LocalEndPoint!).Port;
            if (port >= IPEndPoint.MaxPort)
            {
                continue;
            }
            using var second = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                second.Bind(new IPEndPoint(IPAddress.Loopback, port + 1));
                return port;
            }
            catch (SocketException)
            {
                // P+1 taken: try another P.
            }
        }
        throw new TpmException("no free pair of loopback ports for swtpm");
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
