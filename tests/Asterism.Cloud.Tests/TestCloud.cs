using System.Net;
using System.Net.Sockets;
using System.Text;
using Asterism.Cloud.Local;
using Asterism.Tests;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Cloud.Tests;

/// <summary>
/// A workspace with its own random 127.A.B subnet whose instances are the TEST INSTANCE program
/// (asterism-test-instance), run by an embedded <see cref="LocalCloudProvider"/>. Disposal stops the provider
/// and then SIGKILLs, by PID, any process it ever saw that is still alive, and deletes the workspace.
/// </summary>
internal sealed class TestCloud : IAsyncDisposable
{
    private readonly HashSet<int> _seenPids = [];
    private readonly ListLoggerProvider _logs = new();

    private TestCloud(string dir, CloudSpec spec)
    {
        WorkspaceDir = dir;
        Workspace = new CloudWorkspace(dir);
        Spec = spec;
    }

    public string WorkspaceDir { get; }
    public CloudWorkspace Workspace { get; }
    public CloudSpec Spec { get; }
    public LocalCloudProvider? Provider { get; private set; }
    public HttpMetadataClient NewMetadataClient() => new(new Uri(Provider!.MetadataUrl));
    public string Cp(int i) => $"{Spec.ClusterName}-control-plane-{i}";
    public string Worker(int i) => $"{Spec.ClusterName}-worker-{i}";

    public static string TestInstanceDll => Path.Combine(AppContext.BaseDirectory, "asterism-test-instance.dll");

    public static string DotnetHost =>
        Environment.ProcessPath is { } p && Path.GetFileName(p) == "dotnet" ? p : "dotnet";

    /// <summary>Creates the workspace and spec.json (no provider yet).</summary>
    public static TestCloud Create(int controlPlanes = 1, int workers = 0, IReadOnlyList<string>? nodeArgs = null, IReadOnlyList<string>? nodeCommand = null, string? subnet = null, string? clusterName = null, string variant = CloudSpec.SimulatedVariant)
    {
        var dir = Directory.CreateTempSubdirectory("asterism-cloud-test-").FullName;
        var spec = new CloudSpec
        {
            ClusterName = clusterName ?? "t" + Guid.NewGuid().ToString("N")[..6],
            Subnet = subnet ?? SubnetAllocator.PickFree().Prefix,
            ControlPlanes = controlPlanes,
            Workers = workers,
            NodeCommand = nodeCommand ?? [DotnetHost, TestInstanceDll],
            NodeArgs = nodeArgs ?? [],
            Variant = variant,
        };
        var cloud = new TestCloud(dir, spec);
        if (CloudSubnet.TryParse(spec.Subnet, out _, out _))
        {
            spec.Save(cloud.Workspace.SpecPath);
        }
        else
        {
            // Bypass Save's validation to put a bad spec on disk, as a broken CLI or a hand edit would.
            Directory.CreateDirectory(cloud.Workspace.CloudDir);
            File.WriteAllText(cloud.Workspace.SpecPath, System.Text.Json.JsonSerializer.Serialize(spec, new System.Text.Json.JsonSerializerOptions(System.Text.Json.JsonSerializerDefaults.Web)));
        }
        return cloud;
    }

    /// <summary>Creates and starts an embedded provider with a fast health check, then waits for every instance to listen.</summary>
    public static async Task<TestCloud> StartAsync(int controlPlanes = 1, int workers = 0, IReadOnlyList<string>? nodeArgs = null, TimeSpan? stopGrace = null, string? clusterName = null)
    {
        var cloud = Create(controlPlanes, workers, nodeArgs, clusterName: clusterName);
        try
        {
            await cloud.StartProviderAsync(stopGrace);
            foreach (var i in cloud.Provider!.Instances())
            {
                await cloud.WaitForConsoleAsync(i.Name, "listening", 1);
            }
            return cloud;
        }
        catch
        {
            await cloud.DisposeAsync();
            throw;
        }
    }

    public async Task StartProviderAsync(TimeSpan? stopGrace = null, IFirmware? firmware = null)
    {
        Provider = await LocalCloudProvider.StartAsync(
            new LocalCloudOptions
            {
                WorkspaceDir = WorkspaceDir,
                StopGracePeriod = stopGrace ?? TimeSpan.FromSeconds(5),
                Firmware = firmware,
            },
            new LoggerFactory([_logs]),
            CancellationToken.None);
        Track();
    }

    public InstanceInfo Info(string name)
    {
        var info = Provider!.Instances().Single(i => i.Name == name);
        Track();
        return info;
    }

    public void Track()
    {
        lock (_seenPids)
        {
            foreach (var pid in Provider?.ProcessIds() ?? [])
            {
                _seenPids.Add(pid);
            }
        }
    }

    public void Track(int pid)
    {
        lock (_seenPids)
        {
            _seenPids.Add(pid);
        }
    }

    /// <summary>Every message the provider logged so far.</summary>
    public IReadOnlyList<string> Logs() => _logs.Messages();

    public string Console(string name)
    {
        var path = Workspace.ConsoleLogPath(name);
        return File.Exists(path) ? File.ReadAllText(path) : "";
    }

    public static int Count(string text, string what) => (text.Length - text.Replace(what, "", StringComparison.Ordinal).Length) / what.Length;

    /// <summary>Waits until the console of <paramref name="name"/> contains <paramref name="what"/> at least <paramref name="times"/> times.</summary>
    public Task WaitForConsoleAsync(string name, string what, int times) =>
        Poll.RequireAsync(() => Count(Console(name), what) >= times, Poll.Hang, $"{name} console to show '{what}' {times}x:\n{Console(name)}");

    public IPEndPoint Lb(int port) => new(Provider!.Subnet.LoadBalancerAddress, port);

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (Provider is not null)
            {
                Track();
                await Provider.StopAsync();
            }
        }
        finally
        {
            int[] pids;
            lock (_seenPids)
            {
                pids = [.. _seenPids];
            }
            Procs.KillSurvivors(pids);
            try
            {
                Directory.Delete(WorkspaceDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}

internal static class Procs
{
    public static bool IsAlive(int pid) => ProcessInfo.IsAlive(pid);

    public static void Kill(int pid) => ProcessSignals.Send(pid, ProcessSignals.SigKill);

    public static void Term(int pid) => ProcessSignals.Send(pid, ProcessSignals.SigTerm);

    /// <summary>A test's cleanup: SIGKILL to each of <paramref name="pids"/> still alive.</summary>
    public static void KillSurvivors(IEnumerable<int> pids)
    {
        foreach (var pid in pids.Where(IsAlive))
        {
            Kill(pid);
        }
    }

    /// <summary>Session id (field 6 of /proc/PID/stat).</summary>
    public static int SessionId(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return int.Parse(fields[3], System.Globalization.CultureInfo.InvariantCulture);
    }
}

/// <summary>Talks to the load balancer like a client: reads the backend's greeting line.</summary>
internal static class LbClient
{
    /// <summary>The name of the backend that answered, or null when the load balancer reset/closed the connection.</summary>
    public static async Task<string?> WhoAnswersAsync(IPEndPoint lb)
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await s.ConnectAsync(lb);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            // Under load the load balancer's immediate reset can overtake the end of connect.
            return null;
        }
        var line = await ReadLineAsync(s);
        return line?.Split(' ')[0];
    }

    public static async Task<string?> ReadLineAsync(Socket s)
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        try
        {
            while (true)
            {
                // Hang detector: a connection the load balancer neither answers nor closes throws here, so a null
                // return always means a real close or reset.
                using var cts = new CancellationTokenSource(Poll.Hang);
                var n = await s.ReceiveAsync(one, SocketFlags.None, cts.Token);
                if (n == 0)
                {
                    return null;
                }
                if (one[0] == '\n')
                {
                    return Encoding.ASCII.GetString([.. bytes]);
                }
                bytes.Add(one[0]);
            }
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return null;
        }
    }
}

/// <summary>Keeps log lines in memory (text and fields) so tests can read what the provider logged.</summary>
internal sealed class ListLoggerProvider : ILoggerProvider
{
    private readonly List<string> _messages = [];

    public IReadOnlyList<string> Messages()
    {
        lock (_messages)
        {
            return [.. _messages];
        }
    }

    public ILogger CreateLogger(string categoryName) => new ListLogger(this);

    public void Dispose()
    {
    }

    private sealed class ListLogger(ListLoggerProvider owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (owner._messages)
            {
                // The text and every field (`Message name=value …`), as the provider's JSON line carries them.
                owner._messages.Add(Asterism.Logging.LogText.Format(state, exception, formatter));
            }
        }
    }
}
