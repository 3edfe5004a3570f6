using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Asterism.Cloud.Local;

/// <summary>Health-check and forwarding settings of the <see cref="TcpLoadBalancer"/>.</summary>
public sealed record LoadBalancerOptions
{
    /// <summary>Time between health-check rounds (default 500 ms: recovery loops through the load balancer).</summary>
    public TimeSpan HealthInterval { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>TCP connect timeout of one health check.</summary>
    public TimeSpan HealthTimeout { get; init; } = TimeSpan.FromMilliseconds(300);

    /// <summary>Consecutive failed checks that remove a backend.</summary>
    public int UnhealthyThreshold { get; init; } = 1;

    /// <summary>Consecutive successful checks that (re-)add a backend.</summary>
    public int HealthyThreshold { get; init; } = 1;

    /// <summary>Connect timeout to a backend when forwarding a client.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(1);
}

/// <summary>
/// TCP load balancer on its own loopback address: for each port it forwards clients round-robin to the backends
/// whose TCP health check on that port passed. With no healthy backend it accepts and resets the connection at
/// once (RST, not a silent hang), so a client sees "connection reset" — unavailable — immediately and can retry.
/// </summary>
public sealed class TcpLoadBalancer : IAsyncDisposable
{
    private readonly IPAddress _address;
    private readonly IPAddress[] _backends;
    private readonly LoadBalancerOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Dictionary<int, PortPool> _pools = [];
    private readonly List<Socket> _listeners = [];
    private readonly List<Task> _loops = [];
    private readonly ConcurrentDictionary<ForwardedConnection, byte> _connections = new();
    private readonly CancellationTokenSource _stop = new();
    private int _disposed;

    public TcpLoadBalancer(IPAddress address, IEnumerable<int> ports, IEnumerable<IPAddress> backends, LoadBalancerOptions options, TimeProvider time, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(address);
        _backends = [.. backends];
        if (!CloudSubnet.IsLoopbackV4(address) || !_backends.All(CloudSubnet.IsLoopbackV4))
        {
            throw new ArgumentException("load balancer and backends must be in 127.0.0.0/8");
        }
        _address = address;
        _options = options;
        _time = time;
        _logger = logger;
        foreach (var port in ports)
        {
            _pools[port] = new PortPool(port, _backends.Length);
        }
    }

    public IPAddress Address => _address;

    /// <summary>Number of client connections currently being forwarded.</summary>
    public int ActiveConnections => _connections.Count;

    /// <summary>Backends currently in rotation for a port, in backend order.</summary>
    public IReadOnlyList<IPAddress> HealthyBackends(int port) => _pools[port].Healthy;

    /// <summary>Binds every port (throws <see cref="SocketException"/> if one is taken) and starts health checks and accept loops.</summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var pool in _pools.Values)
        {
            var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            _listeners.Add(listener);
            listener.Bind(new IPEndPoint(_address, pool.Port));
            listener.Listen(512);
        }
        foreach (var (pool, listener) in _pools.Values.Zip(_listeners))
        {
            _loops.Add(Task.Run(() => HealthLoopAsync(pool, _stop.Token), CancellationToken.None));
            _loops.Add(Task.Run(() => AcceptLoopAsync(pool, listener, _stop.Token), CancellationToken.None));
        }
        return Task.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _stop.CancelAsync().ConfigureAwait(false);
        foreach (var l in _listeners)
        {
            l.Dispose();
        }
        foreach (var c in _connections.Keys)
        {
            c.Abort();
        }
        for (var i = 0; i < 200 && !_connections.IsEmpty; i++)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(10), _time).ConfigureAwait(false);
        }
        try
        {
            await Task.WhenAll(_loops).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        _stop.Dispose();
    }

    private async Task HealthLoopAsync(PortPool pool, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(_options.HealthInterval, _time);
        do
        {
            var results = await Task.WhenAll(_backends.Select(b => ProbeAsync(b, pool.Port, ct))).ConfigureAwait(false);
            if (ct.IsCancellationRequested)
            {
                return;
            }
            for (var i = 0; i < _backends.Length; i++)
            {
                switch (pool.Record(i, results[i], _options))
                {
                    case true:
                        Log.BackendUp(_logger, pool.Port, _backends[i].ToString());
                        break;
                    case false:
                        Log.BackendDown(_logger, pool.Port, _backends[i].ToString());
                        break;
                }
            }
            pool.Publish(_backends);
        }
        while (await WaitTickAsync(timer, ct).ConfigureAwait(false));
    }

    private static async Task<bool> WaitTickAsync(PeriodicTimer timer, CancellationToken ct)
    {
        try
        {
            return await timer.WaitForNextTickAsync(ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private async Task<bool> ProbeAsync(IPAddress backend, int port, CancellationToken ct)
    {
        using var socket = await ConnectAsync(backend, port, _options.HealthTimeout, ct).ConfigureAwait(false);
        return socket is not null;
    }

    /// <summary>Connects from the load balancer's own address; null on refusal, timeout or cancellation.</summary>
    private async Task<Socket?> ConnectAsync(IPAddress backend, int port, TimeSpan timeout, CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            socket.Bind(new IPEndPoint(_address, 0));
            await socket.ConnectAsync(new IPEndPoint(backend, port), cts.Token).ConfigureAwait(false);
            return socket;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            return null;
        }
    }

    private async Task AcceptLoopAsync(PortPool pool, Socket listener, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                Log.AcceptFailed(_logger, pool.Port, e.SocketErrorCode.ToString());
                continue;
            }
            _ = Task.Run(() => HandleClientAsync(pool, client, ct), CancellationToken.None);
        }
    }

    private async Task HandleClientAsync(PortPool pool, Socket client, CancellationToken ct)
    {
        try
        {
            client.NoDelay = true;
            Socket? backend = null;
            foreach (var candidate in pool.NextRotation())
            {
                backend = await ConnectAsync(candidate, pool.Port, _options.ConnectTimeout, ct).ConfigureAwait(false);
                if (backend is not null)
                {
                    break;
                }
                // Died between health checks: take it out now rather than at the next round.
                if (pool.MarkDown(Array.IndexOf(_backends, candidate), _backends))
                {
                    Log.BackendDown(_logger, pool.Port, candidate.ToString());
                }
            }
            if (backend is null)
            {
                Log.NoBackend(_logger, pool.Port, client.RemoteEndPoint?.ToString() ?? "?");
                ForwardedConnection.Reset(client);
                return;
            }
            var connection = new ForwardedConnection(client, backend);
            _connections[connection] = 0;
            try
            {
                await connection.RunAsync(ct).ConfigureAwait(false);
            }
            finally
            {
                _connections.TryRemove(connection, out _);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // The client went away before forwarding began.
            client.Dispose();
        }
    }

    /// <summary>Health state of all backends on one port; rotation reads an immutable snapshot.</summary>
    private sealed class PortPool(int port, int backendCount)
    {
        private readonly Lock _lock = new();
        private readonly bool[] _healthy = new bool[backendCount];
        private readonly int[] _streak = new int[backendCount];
        private IPAddress[] _snapshot = [];
        private int _next = -1;

        public int Port { get; } = port;

        public IReadOnlyList<IPAddress> Healthy => Volatile.Read(ref _snapshot);

        /// <summary>Records one check; returns true/false when the backend's health flipped, null otherwise.</summary>
        public bool? Record(int index, bool ok, LoadBalancerOptions options)
        {
            lock (_lock)
            {
                if (ok == _healthy[index])
                {
                    _streak[index] = 0;
                    return null;
                }
                _streak[index]++;
                if (_streak[index] < (ok ? options.HealthyThreshold : options.UnhealthyThreshold))
                {
                    return null;
                }
                _streak[index] = 0;
                _healthy[index] = ok;
                return ok;
            }
        }

        public bool MarkDown(int index, IReadOnlyList<IPAddress> backends)
        {
            lock (_lock)
            {
                if (index < 0 || !_healthy[index])
                {
                    return false;
                }
                _healthy[index] = false;
                _streak[index] = 0;
            }
            Publish(backends);
            return true;
        }

        public void Publish(IReadOnlyList<IPAddress> backends)
        {
            lock (_lock)
            {
                Volatile.Write(ref _snapshot, [.. backends.Where((_, i) => _healthy[i])]);
            }
        }

        /// <summary>The healthy backends starting at the next round-robin position.</summary>
        public IEnumerable<IPAddress> NextRotation()
        {
            var snapshot = Volatile.Read(ref _snapshot);
            if (snapshot.Length == 0)
            {
                yield break;
            }
            var start = (int)((uint)Interlocked.Increment(ref _next) % (uint)snapshot.Length);
            for (var i = 0; i < snapshot.Length; i++)
            {
                yield return snapshot[(start + i) % snapshot.Length];
            }
        }
    }
}
