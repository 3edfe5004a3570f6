using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace Asterism.Cloud.TestInstance;

/// <summary>
/// TEST INSTANCE, not a node: a stand-in for asterism-node that the local provider's tests launch. It takes the
/// node's arguments, prints lines to stdout and stderr, listens on its address on the requested ports (each
/// connection gets "NAME PORT\n" and then an echo until end of stream, which it half-closes), and exits on
/// SIGTERM after printing that it got it (unless --ignore-sigterm).
/// Extra flags: --ports 9999,30090,6443 (default), --ports-for NAME=PORTS (override for one instance),
/// --ignore-sigterm, --write-disk (creates the --disk file, as a node formats its state disk).
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var flags = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i].StartsWith("--", StringComparison.Ordinal))
            {
                var key = args[i];
                var value = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[++i] : "";
                if (!flags.TryGetValue(key, out var list))
                {
                    flags[key] = list = [];
                }
                list.Add(value);
            }
        }
        string Flag(string name, string fallback = "") => flags.TryGetValue(name, out var v) ? v[^1] : fallback;

        var name = Flag("--name", "unnamed");
        var address = IPAddress.Parse(Flag("--address", "127.0.0.1"));
        var ports = Flag("--ports", "9999,30090,6443");
        foreach (var over in flags.GetValueOrDefault("--ports-for") ?? [])
        {
            var parts = over.Split('=', 2);
            if (parts.Length == 2 && parts[0] == name)
            {
                ports = parts[1];
            }
        }
        var ignoreSigterm = flags.ContainsKey("--ignore-sigterm");

        Console.Out.WriteLine($"test-instance {name} started pid={Environment.ProcessId} args={string.Join(' ', args)}");
        Console.Error.WriteLine($"test-instance {name} stderr line");
        if (File.Exists("boot-measurements.json"))
        {
            Console.Out.WriteLine($"test-instance {name} boot-measurements {File.ReadAllText("boot-measurements.json").ReplaceLineEndings(" ")}");
        }

        if (flags.ContainsKey("--write-disk") && Flag("--disk") is { Length: > 0 } disk)
        {
            // Created with whatever umask the provider handed down, as the node creates its state disk.
            File.WriteAllText(disk, "test-instance disk placeholder\n");
        }

        using var stop = new CancellationTokenSource();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx =>
        {
            ctx.Cancel = true;
            Console.Out.WriteLine(ignoreSigterm ? $"test-instance {name} ignoring SIGTERM" : $"test-instance {name} received SIGTERM");
            if (!ignoreSigterm)
            {
                stop.Cancel();
            }
        });

        var listeners = new List<TcpListener>();
        foreach (var port in ports.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse))
        {
            var l = new TcpListener(address, port);
            l.Start();
            listeners.Add(l);
        }
        var loops = listeners.Select(l => AcceptLoopAsync(l, name, stop.Token)).ToList();
        Console.Out.WriteLine($"test-instance {name} listening on {ports}");
        try
        {
            await Task.Delay(Timeout.Infinite, stop.Token);
        }
        catch (OperationCanceledException)
        {
        }
        foreach (var l in listeners)
        {
            l.Stop();
        }
        Console.Out.WriteLine($"test-instance {name} exiting");
        return 0;
    }

    private static async Task AcceptLoopAsync(TcpListener listener, string name, CancellationToken ct)
    {
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        while (!ct.IsCancellationRequested)
        {
            Socket s;
            try
            {
                s = await listener.AcceptSocketAsync(ct);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            _ = Task.Run(async () =>
            {
                using (s)
                {
                    try
                    {
                        await s.SendAsync(Encoding.ASCII.GetBytes($"{name} {port}\n"), SocketFlags.None, ct);
                        var buffer = new byte[4096];
                        int n;
                        while ((n = await s.ReceiveAsync(buffer, SocketFlags.None, ct)) > 0)
                        {
                            await s.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, ct);
                        }
                        s.Shutdown(SocketShutdown.Send);
                    }
                    catch (Exception e) when (e is OperationCanceledException or SocketException)
                    {
                    }
                }
            }, CancellationToken.None);
        }
    }
}
