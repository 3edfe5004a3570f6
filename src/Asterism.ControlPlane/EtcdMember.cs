using System.ComponentModel;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Etcdserverpb;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.ControlPlane;

/// <summary>
/// One etcd member as a supervised child process: mutual TLS for clients and peers under the cluster CA, listening on
/// the node's own address. <see cref="StartAsync"/> returns once the member is healthy (it knows a leader and, unless a
/// learner, answers a linearizable read); <see cref="StopAsync"/> sends SIGTERM to its PID and SIGKILL after
/// <see cref="EtcdMemberOptions.StopTimeout"/>.
/// <para>
/// Dying with the parent: etcd is exec'd through <c>setpriv --pdeathsig KILL</c>, so the kernel sends it SIGKILL when the
/// thread that forked it ends, which includes the whole supervisor being killed by SIGKILL. Because the parent-death
/// signal follows the forking <em>thread</em>, not the process, the fork happens on a dedicated thread that lives exactly
/// as long as etcd (it forks, then waits for the exit); a thread-pool thread could retire and take etcd with it.
/// SIGKILL is safe for etcd: its WAL is fsynced before anything is acknowledged.
/// </para>
/// </summary>
public sealed partial class EtcdMember : IAsyncDisposable
{
    /// <summary>The text of the error when etcd is missing.</summary>
    public const string NotInstalledMessage = "etcd is not installed (apt-get install etcd-server)";

    private const int OutputTailLines = 40;

    private readonly EtcdMemberOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Queue<string> _outputTail = new();
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _pid;
    private int _exitCode = -1;

    private EtcdMember(EtcdMemberOptions options, ILogger logger, TimeProvider time)
    {
        _options = options;
        _logger = logger;
        _time = time;
    }

    /// <summary>The member's options.</summary>
    public EtcdMemberOptions Options => _options;

    /// <summary>PID of the etcd process (0 before start).</summary>
    public int ProcessId => _pid;

    /// <summary>Whether the etcd process has exited.</summary>
    public bool HasExited => _exited.Task.IsCompleted;

    /// <summary>Completes when the etcd process exits (crash or stop).</summary>
    public Task Exited => _exited.Task;

    /// <summary>The client URL of this member.</summary>
    public Uri ClientUrl => _options.ClientUrl;

    /// <summary>
    /// Starts etcd and waits until it is healthy. Throws <see cref="ControlPlaneException"/>: NotInstalled when the binary
    /// is missing, StartFailed (with etcd's last output lines) when it exits or does not become healthy in time.
    /// </summary>
    public static async Task<EtcdMember> StartAsync(EtcdMemberOptions options, ILogger? logger = null, TimeProvider? time = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        NodeNames.Validate(options.Name);
        var etcd = ResolveEtcd(options.EtcdPath);
        var setpriv = ResolveTool("setpriv") ?? throw new ControlPlaneException(ControlPlaneError.NotInstalled,
            "setpriv is not installed (apt-get install util-linux); it ties etcd's life to its supervisor");
        SecureFiles.EnsurePrivateDirectory(options.DataDirectory);
        EnsurePortsFree(options);
        var member = new EtcdMember(options, logger ?? NullLogger.Instance, time ?? TimeProvider.System);
        member.Launch(setpriv, etcd);
        try
        {
            await member.WaitHealthyAsync(cancellationToken);
        }
        catch
        {
            await member.KillAsync();
            throw;
        }
        ControlPlaneLog.MemberStarted(member._logger, options.Name, options.ClientUrl.ToString(), member._pid);
        return member;
    }

    /// <summary>
    /// Refuses to start when another process holds the member's client or peer port on its address (a squatter that
    /// bound them first, or a stale etcd): etcd would exit on the bind error anyway, but this says so in one line. A
    /// squatter that binds in the moment between this check and etcd's bind makes etcd exit (StartFailed with its
    /// output), and our client never trusts it meanwhile: its certificate does not chain to the etcd CA.
    /// </summary>
    private static void EnsurePortsFree(EtcdMemberOptions options)
    {
        foreach (var (port, what) in new[] { (options.ClientPort, "client"), (options.PeerPort, "peer") })
        {
            var probe = new System.Net.Sockets.TcpListener(options.Address, port);
            try
            {
                // Connections of a previous etcd lingering in TIME_WAIT must not count: only a live listener does.
                probe.Server.SetSocketOption(System.Net.Sockets.SocketOptionLevel.Socket, System.Net.Sockets.SocketOptionName.ReuseAddress, true);
                probe.Start();
            }
            catch (System.Net.Sockets.SocketException e) when (e.SocketErrorCode == System.Net.Sockets.SocketError.AddressAlreadyInUse)
            {
                throw new ControlPlaneException(ControlPlaneError.StartFailed,
                    $"etcd member {options.Name}: its {what} port {options.Address}:{port} is already taken by another process; not starting etcd there");
            }
            finally
            {
                probe.Dispose();
            }
        }
    }

    /// <summary>The etcd command line for these options (no secrets in it: only file paths).</summary>
    public static IReadOnlyList<string> BuildArguments(EtcdMemberOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var cluster = options.InitialCluster ?? [(options.Name, options.PeerUrl)];
        return
        [
            "--name", options.Name,
            "--data-dir", options.DataDirectory,
            "--listen-client-urls", options.ClientUrl.ToString().TrimEnd('/'),
            "--advertise-client-urls", options.ClientUrl.ToString().TrimEnd('/'),
            "--listen-peer-urls", options.PeerUrl.ToString().TrimEnd('/'),
            "--initial-advertise-peer-urls", options.PeerUrl.ToString().TrimEnd('/'),
            "--initial-cluster", string.Join(',', cluster.Select(m => $"{m.Name}={m.PeerUrl.ToString().TrimEnd('/')}")),
            "--initial-cluster-state", options.State == ClusterState.New ? "new" : "existing",
            "--initial-cluster-token", options.ClusterToken,
            "--cert-file", options.Tls.CertificatePath,
            "--key-file", options.Tls.KeyPath,
            "--trusted-ca-file", options.Tls.CaPath,
            "--client-cert-auth",
            "--peer-cert-file", options.Tls.CertificatePath,
            "--peer-key-file", options.Tls.KeyPath,
            "--peer-trusted-ca-file", options.Tls.CaPath,
            "--peer-client-cert-auth",
            // A member that would leave the cluster without quorum is refused by MemberAdd/MemberRemove.
            "--strict-reconfig-check",
            "--logger", "zap",
            "--log-outputs", "stderr",
        ];
    }

    private static string ResolveEtcd(string? configured)
    {
        if (configured is not null)
        {
            return File.Exists(configured) ? configured : throw new ControlPlaneException(ControlPlaneError.NotInstalled, NotInstalledMessage);
        }
        return ResolveTool("etcd") ?? throw new ControlPlaneException(ControlPlaneError.NotInstalled, NotInstalledMessage);
    }

    private static string? ResolveTool(string name)
    {
        var path = (Environment.GetEnvironmentVariable("PATH") ?? "") + ":/usr/bin:/usr/sbin:/bin:/sbin";
        return path.Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);
    }

    private void Launch(string setpriv, string etcd)
    {
        var started = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() => Supervise(setpriv, etcd, started))
        {
            IsBackground = true,
            Name = $"etcd {_options.Name}",
        };
        thread.Start();
        // The thread sets the result right after Process.Start returns; nothing async to wait for.
        _pid = started.Task.GetAwaiter().GetResult();
    }

    /// <summary>Runs on the dedicated thread: fork etcd, then block until it exits so the parent-death signal stays armed.</summary>
    private void Supervise(string setpriv, string etcd, TaskCompletionSource<int> started)
    {
        var psi = new ProcessStartInfo(setpriv)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.ArgumentList.Add("--pdeathsig");
        psi.ArgumentList.Add("KILL");
        psi.ArgumentList.Add("--");
        psi.ArgumentList.Add(etcd);
        foreach (var a in BuildArguments(_options))
        {
            psi.ArgumentList.Add(a);
        }
        // etcd reads ETCD_* variables as flags: none of the parent's may change the configuration.
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("ETCD", StringComparison.Ordinal)).ToList())
        {
            psi.Environment.Remove(key);
        }
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new ControlPlaneException(ControlPlaneError.StartFailed, "etcd did not start");
        }
        catch (Win32Exception e)
        {
            started.SetException(new ControlPlaneException(ControlPlaneError.NotInstalled, NotInstalledMessage, e));
            _exited.TrySetResult();
            return;
        }
        using (process)
        {
            process.OutputDataReceived += (_, e) => Remember(e.Data);
            process.ErrorDataReceived += (_, e) => Remember(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            process.StandardInput.Close();
            started.SetResult(process.Id);
            process.WaitForExit();
            _exitCode = process.ExitCode;
        }
        ControlPlaneLog.MemberExited(_logger, _options.Name, _pid, _exitCode);
        _exited.TrySetResult();
    }

    private void Remember(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_outputTail)
        {
            _outputTail.Enqueue(line.Length > 2000 ? line[..2000] : line);
            while (_outputTail.Count > OutputTailLines)
            {
                _outputTail.Dequeue();
            }
        }
    }

    /// <summary>etcd's last output lines (its own log; it holds no key material, only paths and URLs).</summary>
    public string OutputTail()
    {
        lock (_outputTail)
        {
            return string.Join('\n', _outputTail);
        }
    }

    private async Task WaitHealthyAsync(CancellationToken cancellationToken)
    {
        using var connection = new EtcdConnection([_options.ClientUrl], _options.Tls, TimeSpan.FromSeconds(2), _time);
        var started = _time.GetTimestamp();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (HasExited)
            {
                throw new ControlPlaneException(ControlPlaneError.StartFailed,
                    $"etcd member {_options.Name} exited with code {_exitCode} while starting; its last output:\n{OutputTail()}");
            }
            if (await IsHealthyAsync(connection, cancellationToken))
            {
                return;
            }
            if (_time.GetElapsedTime(started) > _options.StartTimeout)
            {
                throw new ControlPlaneException(ControlPlaneError.StartFailed,
                    $"etcd member {_options.Name} did not become healthy within {_options.StartTimeout.TotalSeconds:0} s; its last output:\n{OutputTail()}");
            }
            await Task.WhenAny(Task.Delay(TimeSpan.FromMilliseconds(100), _time, cancellationToken), _exited.Task);
        }
    }

    private async Task<bool> IsHealthyAsync(EtcdConnection connection, CancellationToken cancellationToken)
    {
        try
        {
            var status = await connection.CallAsync((c, d, ct) => c.StatusAsync(new StatusRequest(), deadline: d, cancellationToken: ct), cancellationToken);
            if (status.Leader == 0)
            {
                return false;
            }
            if (_options.IsLearner)
            {
                return true;
            }
            await connection.CallAsync((c, d, ct) => c.GetAsync(new RangeRequest { Key = Google.Protobuf.ByteString.CopyFromUtf8("/asterism/health") }, deadline: d, cancellationToken: ct), cancellationToken);
            return true;
        }
        catch (ControlPlaneException)
        {
            return false;
        }
        catch (Grpc.Core.RpcException)
        {
            return false;
        }
    }

    /// <summary>Stops the member: SIGTERM to its PID, SIGKILL when it has not exited after the stop timeout.</summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        if (_pid == 0 || HasExited)
        {
            return;
        }
        Signal(Sigterm);
        var stopped = await Task.WhenAny(_exited.Task, Task.Delay(_options.StopTimeout, _time, cancellationToken)) == _exited.Task;
        if (!stopped)
        {
            ControlPlaneLog.MemberKilled(_logger, _options.Name, _pid);
            await KillAsync();
        }
    }

    /// <summary>SIGKILL to the PID and wait for the exit (a crash, for tests and for a failed start).</summary>
    public async Task KillAsync()
    {
        if (_pid == 0 || HasExited)
        {
            return;
        }
        Signal(Sigkill);
        await _exited.Task;
    }

    private void Signal(int signal)
    {
        // The PID is ours until the supervising thread has reaped it, so it cannot have been reused.
        if (!HasExited && Kill(_pid, signal) != 0 && !HasExited)
        {
            ControlPlaneLog.SignalFailed(_logger, _options.Name, _pid, signal, Marshal.GetLastPInvokeError());
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync() => await StopAsync();

    private const int Sigterm = 15;
    private const int Sigkill = 9;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
