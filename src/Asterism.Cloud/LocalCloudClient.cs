using System.Diagnostics;
using System.Net;

namespace Asterism.Cloud;

/// <summary>How <see cref="LocalCloudClient.StartProviderAsync"/> launches `asterism-cloud`.</summary>
public sealed record ProviderLaunchOptions
{
    /// <summary>
    /// The provider command, e.g. ["dotnet", "/abs/asterism-cloud.dll"]. Default: asterism-cloud.dll next to the
    /// running program, run by the current dotnet host.
    /// </summary>
    public IReadOnlyList<string>? ProviderCommand { get; init; }

    /// <summary>Extra provider arguments, e.g. ["--health-interval", "200ms"].</summary>
    public IReadOnlyList<string> ExtraArgs { get; init; } = [];

    /// <summary>How long to wait for cloud.json and a first API answer.</summary>
    public TimeSpan ReadyTimeout { get; init; } = TimeSpan.FromSeconds(60);
}

/// <summary>The provider is not running, failed to start, or refused a request.</summary>
public sealed class LocalCloudException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The CLI's handle on a workspace's local provider: instance list (plus the node-facing metadata calls), power
/// actions and shutdown; and the static helpers that start a detached provider or find a running one.
/// </summary>
public sealed class LocalCloudClient : HttpMetadataClient
{
    private LocalCloudClient(CloudWorkspace workspace, CloudState state, ApiCredential credential)
        : base(new Uri(state.MetadataUrl), null, credential.AuthorizationValue)
    {
        Workspace = workspace;
        State = state;
        Credential = credential;
    }

    public CloudWorkspace Workspace { get; }

    /// <summary>The workspace's API credential, sent with every request; the workload API of the nodes wants it too.</summary>
    public ApiCredential Credential { get; }

    /// <summary>A client for a provider whose state is known (an embedded provider in tests).</summary>
    internal static LocalCloudClient ForState(CloudWorkspace workspace, CloudState state) =>
        new(workspace, state, ApiCredential.Load(workspace.CredentialPath));

    /// <summary>Contents of cloud.json (provider PID, metadata URL, load balancer, subnet).</summary>
    public CloudState State { get; }

    /// <summary>Runs a power action on the named instances (null = all). Unknown names or actions: <see cref="MetadataException"/> with status 400, nothing changed.</summary>
    public Task<PowerResponse> PowerAsync(PowerAction action, IReadOnlyList<string>? names, CancellationToken cancellationToken) =>
        PostAsync<PowerResponse>("v1/power", new PowerRequest { Action = action.ToWire(), Names = names }, cancellationToken);

    /// <summary>Same as <see cref="PowerAsync(PowerAction, IReadOnlyList{string}?, CancellationToken)"/> with the wire action name (lets the CLI pass user input through).</summary>
    public Task<PowerResponse> PowerAsync(string action, IReadOnlyList<string>? names, CancellationToken cancellationToken) =>
        PostAsync<PowerResponse>("v1/power", new PowerRequest { Action = action, Names = names }, cancellationToken);

    /// <summary>Asks the provider to stop every instance and exit, then waits until its process is gone.</summary>
    /// <summary>Adds a control-plane instance to the running cluster and starts it; returns it.</summary>
    public Task<InstanceInfo> AddControlPlaneAsync(CancellationToken cancellationToken) =>
        PostAsync<InstanceInfo>("v1/instances", new { role = "control-plane" }, cancellationToken);

    public async Task ShutdownAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        await PostAsync<ShutdownResponse>("v1/shutdown", new { }, cancellationToken).ConfigureAwait(false);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            while (ProcessInfo.IsAlive(State.Pid))
            {
                await Task.Delay(50, cts.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new LocalCloudException($"provider (PID {State.Pid}) still running {timeout.TotalSeconds:0} s after shutdown");
        }
    }

    /// <summary>Connects to a running provider, or returns null with a reason such as "provider not running".</summary>
    public static LocalCloudClient? TryConnect(string workspaceDir, out string reason)
    {
        var workspace = new CloudWorkspace(workspaceDir);
        if (!File.Exists(workspace.StatePath))
        {
            reason = $"provider not running (no {workspace.StatePath})";
            return null;
        }
        CloudState state;
        try
        {
            state = CloudState.Load(workspace.StatePath);
        }
        catch (CloudConfigException e)
        {
            reason = $"provider not running ({e.Message})";
            return null;
        }
        if (state.RunningProvider() is null)
        {
            reason = $"provider not running (PID {state.Pid} from {workspace.StatePath} is gone)";
            return null;
        }
        if (!Uri.TryCreate(state.MetadataUrl, UriKind.Absolute, out var url) || !IPAddress.TryParse(url.Host, out var host) || !CloudSubnet.IsLoopbackV4(host))
        {
            reason = $"provider state {workspace.StatePath} has an invalid metadata URL";
            return null;
        }
        ApiCredential credential;
        try
        {
            credential = ApiCredential.Load(workspace.CredentialPath);
        }
        catch (CloudConfigException e)
        {
            reason = $"the workspace's API credential is unusable: {e.Message}";
            return null;
        }
        reason = "";
        return new LocalCloudClient(workspace, state, credential);
    }

    public static LocalCloudClient? TryConnect(string workspaceDir) => TryConnect(workspaceDir, out _);

    /// <summary>Like <see cref="TryConnect(string, out string)"/> but throws <see cref="LocalCloudException"/> with the reason.</summary>
    public static LocalCloudClient Connect(string workspaceDir) =>
        TryConnect(workspaceDir, out var reason) ?? throw new LocalCloudException(reason);

    /// <summary>
    /// Launches `asterism-cloud --workspace DIR` detached (own session via setsid, stdin /dev/null, stdout and
    /// stderr appended to cloud.log) so it outlives the CLI, then waits for cloud.json and an API answer.
    /// </summary>
    public static async Task<LocalCloudClient> StartProviderAsync(string workspaceDir, ProviderLaunchOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new ProviderLaunchOptions();
        var workspace = new CloudWorkspace(workspaceDir);
        CloudSpec.Load(workspace.SpecPath);
        if (TryConnect(workspaceDir, out _) is { } running)
        {
            var pid = running.State.Pid;
            running.Dispose();
            throw new LocalCloudException($"a provider is already running for {workspace.WorkspaceDir} (PID {pid})");
        }
        File.Delete(workspace.StatePath);
        workspace.EnsurePrivateDirectories();
        // The shell below creates cloud.log with the CLI's umask; make it 0600 first so no umask can widen it.
        OwnerOnly.Touch(workspace.LogPath);

        var psi = new ProcessStartInfo("setsid") { UseShellExecute = false, WorkingDirectory = workspace.CloudDir };
        foreach (var a in new[] { "sh", "-c", "exec \"$@\" </dev/null >>\"$0\" 2>&1", workspace.LogPath }
                     .Concat(options.ProviderCommand ?? DefaultProviderCommand())
                     .Concat(["--workspace", workspace.WorkspaceDir])
                     .Concat(options.ExtraArgs))
        {
            psi.ArgumentList.Add(a);
        }
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new LocalCloudException("could not start asterism-cloud");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new LocalCloudException($"could not start asterism-cloud via setsid (util-linux): {e.Message}", e);
        }
        using var launched = process;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(options.ReadyTimeout);
        try
        {
            while (true)
            {
                if (process.HasExited)
                {
                    throw new LocalCloudException($"asterism-cloud exited with code {process.ExitCode} before it was ready; last lines of {workspace.LogPath}:\n{Tail(workspace.LogPath, 15)}");
                }
                if (TryConnect(workspaceDir, out _) is { } client)
                {
                    try
                    {
                        await client.ListAsync(cts.Token).ConfigureAwait(false);
                        return client;
                    }
                    catch (MetadataException)
                    {
                        client.Dispose();
                    }
                }
                await Task.Delay(50, cts.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new LocalCloudException($"asterism-cloud (PID {process.Id}) not ready after {options.ReadyTimeout.TotalSeconds:0} s; see {workspace.LogPath}");
        }
    }

    /// <summary>asterism-cloud.dll next to the running program, run by this process's dotnet host (or `dotnet` from PATH).</summary>
    public static IReadOnlyList<string> DefaultProviderCommand()
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "asterism-cloud.dll");
        if (!File.Exists(dll))
        {
            throw new LocalCloudException($"asterism-cloud.dll not found next to {AppContext.BaseDirectory}; pass ProviderLaunchOptions.ProviderCommand");
        }
        var host = Environment.ProcessPath is { } p && Path.GetFileName(p) == "dotnet" ? p : "dotnet";
        return [host, dll];
    }

    private static string Tail(string path, int lines)
    {
        try
        {
            return string.Join('\n', File.ReadLines(path).TakeLast(lines));
        }
        catch (IOException)
        {
            return "(no log)";
        }
    }
}

/// <summary>Process facts from /proc (Linux).</summary>
internal static class ProcessInfo
{
    public static bool IsAlive(int pid)
    {
        if (pid <= 0)
        {
            return false;
        }
        try
        {
            // A zombie still has a /proc entry but is no longer running.
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var afterComm = stat.LastIndexOf(')');
            return afterComm > 0 && afterComm + 2 < stat.Length && stat[afterComm + 2] != 'Z';
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return true;
        }
    }

    public static string CommandLine(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ');
        }
        catch (IOException)
        {
            return "";
        }
        catch (UnauthorizedAccessException)
        {
            return "";
        }
    }
}
