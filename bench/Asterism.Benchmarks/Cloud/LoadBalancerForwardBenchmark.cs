using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Asterism.Cloud;
using Asterism.Cloud.Local;
using Asterism.Protocol;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Benchmarks.Cloud;

/// <summary>
/// Cost of the local provider's TCP load balancer against a direct connection to the same backend, measured in
/// the same run: connection setup plus one round trip, and bulk throughput. Args: [connections] [megabytes].
/// </summary>
public sealed class LoadBalancerForwardBenchmark : IMacroBenchmark
{
    public string Name => "lb-forward";
    public string Description => "TCP load balancer vs direct connection: connect+round trip latency and throughput";

    public async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        var connections = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 500;
        var megabytes = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 512;
        var subnet = SubnetAllocator.PickFree();
        var backendAddress = subnet.InstanceAddress(0);
        using var backend = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        backend.Bind(new IPEndPoint(backendAddress, Ports.Recovery));
        backend.Listen(512);
        using var stop = new CancellationTokenSource();
        var server = Task.Run(() => CountingServerAsync(backend, stop.Token), CancellationToken.None);

        await using var lb = new TcpLoadBalancer(subnet.LoadBalancerAddress, [Ports.Recovery], [backendAddress], new LoadBalancerOptions(), TimeProvider.System, NullLogger.Instance);
        await lb.StartAsync(cancellationToken);
        while (lb.HealthyBackends(Ports.Recovery).Count == 0)
        {
            await Task.Delay(10, cancellationToken);
        }
        var direct = new IPEndPoint(backendAddress, Ports.Recovery);
        var viaLb = new IPEndPoint(subnet.LoadBalancerAddress, Ports.Recovery);

        // Warm up both paths, then alternate the measurements so machine noise hits both alike.
        await LatencyAsync(direct, 50);
        await LatencyAsync(viaLb, 50);
        var directLatency = await LatencyAsync(direct, connections);
        var lbLatency = await LatencyAsync(viaLb, connections);
        var directThroughput = await ThroughputAsync(direct, megabytes);
        var lbThroughput = await ThroughputAsync(viaLb, megabytes);

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"lb-forward connect+rtt direct={directLatency:0.0}us lb={lbLatency:0.0}us ratio(lb/direct)={lbLatency / directLatency:0.00}"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"lb-forward throughput direct={directThroughput:0}MB/s lb={lbThroughput:0}MB/s ratio(lb/direct)={lbThroughput / directThroughput:0.00}"));
        await stop.CancelAsync();
        backend.Close();
        await server.ContinueWith(_ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        return 0;
    }

    /// <summary>Mean microseconds for connect, send 1 byte, half-close, read the 8-byte answer, close.</summary>
    private static async Task<double> LatencyAsync(IPEndPoint target, int count)
    {
        var watch = Stopwatch.StartNew();
        var answer = new byte[8];
        for (var i = 0; i < count; i++)
        {
            using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await s.ConnectAsync(target);
            await s.SendAsync(new byte[] { 1 }, SocketFlags.None);
            s.Shutdown(SocketShutdown.Send);
            await ReadExactlyAsync(s, answer);
        }
        return watch.Elapsed.TotalMicroseconds / count;
    }

    /// <summary>MB/s for streaming <paramref name="megabytes"/> to the counting backend.</summary>
    private static async Task<double> ThroughputAsync(IPEndPoint target, int megabytes)
    {
        var chunk = new byte[64 * 1024];
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(target);
        var watch = Stopwatch.StartNew();
        long total = (long)megabytes * 1024 * 1024;
        for (long sent = 0; sent < total; sent += chunk.Length)
        {
            await s.SendAsync(chunk, SocketFlags.None);
        }
        s.Shutdown(SocketShutdown.Send);
        var answer = new byte[8];
        await ReadExactlyAsync(s, answer);
        if (BinaryPrimitives.ReadInt64BigEndian(answer) != total)
        {
            throw new InvalidOperationException("backend counted a different number of bytes");
        }
        return megabytes / watch.Elapsed.TotalSeconds;
    }

    private static async Task CountingServerAsync(Socket listener, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            var client = await listener.AcceptAsync(ct);
            _ = Task.Run(async () =>
            {
                using (client)
                {
                    var buffer = new byte[64 * 1024];
                    long count = 0;
                    int n;
                    try
                    {
                        while ((n = await client.ReceiveAsync(buffer, SocketFlags.None, ct)) > 0)
                        {
                            count += n;
                        }
                        var answer = new byte[8];
                        BinaryPrimitives.WriteInt64BigEndian(answer, count);
                        await client.SendAsync(answer, SocketFlags.None, ct);
                    }
                    catch (SocketException)
                    {
                        // Health-check connections close without sending.
                    }
                }
            }, CancellationToken.None);
        }
    }

    private static async Task ReadExactlyAsync(Socket s, byte[] buffer)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await s.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None);
            if (n == 0)
            {
                throw new InvalidOperationException("connection closed early");
            }
            read += n;
        }
    }
}
