using System.Net.Sockets;
using System.Text;
using Asterism.Tests;

namespace Asterism.Cloud.Tests;

public class LoadBalancerTests
{
    [Fact]
    public async Task Forward_RoundRobinOverHealthyControlPlanes_StopRemovesStartReAdds()
    {
        await using var cloud = await TestCloud.StartAsync(controlPlanes: 2, workers: 1);
        var lb = cloud.Provider!.LoadBalancer;
        await Poll.RequireAsync(() => lb.HealthyBackends(9999).Count == 2, Poll.Hang, "both control planes healthy");

        var answers = new List<string?>();
        for (var i = 0; i < 6; i++)
        {
            answers.Add(await LbClient.WhoAnswersAsync(cloud.Lb(9999)));
        }
        Assert.Equal(3, answers.Count(a => a == cloud.Cp(0)));
        Assert.Equal(3, answers.Count(a => a == cloud.Cp(1)));
        Assert.DoesNotContain(cloud.Worker(0), answers);

        await cloud.Provider.PowerAsync(PowerAction.Stop, [cloud.Cp(1)], CancellationToken.None);
        await Poll.RequireAsync(() => lb.HealthyBackends(9999).Count == 1 && lb.HealthyBackends(30090).Count == 1 && lb.HealthyBackends(6443).Count == 1, Poll.Hang, "the stopped backend to leave");
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(cloud.Cp(0), await LbClient.WhoAnswersAsync(cloud.Lb(6443)));
        }

        await cloud.Provider.PowerAsync(PowerAction.Start, [cloud.Cp(1)], CancellationToken.None);
        await Poll.RequireAsync(() => lb.HealthyBackends(30090).Count == 2, Poll.Hang, "the started backend to come back");
        var back = new HashSet<string?>();
        for (var i = 0; i < 4; i++)
        {
            back.Add(await LbClient.WhoAnswersAsync(cloud.Lb(30090)));
        }
        Assert.Equal([cloud.Cp(0), cloud.Cp(1)], back.Order());
    }

    [Fact]
    public async Task Forward_EchoWithHalfClose_BothDirectionsAndCleanup()
    {
        await using var cloud = await TestCloud.StartAsync();
        var lb = cloud.Provider!.LoadBalancer;
        await Poll.RequireAsync(() => lb.HealthyBackends(9999).Count == 1, Poll.Hang, "backend healthy");

        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(cloud.Lb(9999));
        Assert.Equal($"{cloud.Cp(0)} 9999", await LbClient.ReadLineAsync(s));
        var payload = new byte[200_000];
        Random.Shared.NextBytes(payload);
        var send = Task.Run(async () =>
        {
            await s.SendAsync(payload, SocketFlags.None);
            s.Shutdown(SocketShutdown.Send);
        });
        var received = new MemoryStream();
        var buffer = new byte[65536];
        int n;
        // Hang detector only: the echo ends when the backend closes its side.
        using (var cts = new CancellationTokenSource(Poll.Hang))
        {
            while ((n = await s.ReceiveAsync(buffer, SocketFlags.None, cts.Token)) > 0)
            {
                received.Write(buffer, 0, n);
            }
        }
        await send;
        Assert.Equal(payload, received.ToArray());
        await Poll.RequireAsync(() => lb.ActiveConnections == 0, Poll.Hang, "the forwarded connection to be cleaned up");
    }

    [Fact]
    public async Task Dispose_OpenForwardedConnection_ClosedAndCleanedUp()
    {
        await using var cloud = await TestCloud.StartAsync();
        var lb = cloud.Provider!.LoadBalancer;
        await Poll.RequireAsync(() => lb.HealthyBackends(6443).Count == 1, Poll.Hang, "backend healthy");
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(cloud.Lb(6443));
        Assert.Equal($"{cloud.Cp(0)} 6443", await LbClient.ReadLineAsync(s));
        Assert.Equal(1, lb.ActiveConnections);

        await lb.DisposeAsync();

        Assert.Equal(0, lb.ActiveConnections);
        Assert.Null(await LbClient.ReadLineAsync(s));
        await Assert.ThrowsAsync<SocketException>(async () =>
        {
            using var again = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await again.ConnectAsync(cloud.Lb(6443));
        });
    }

    [Fact]
    public async Task Forward_PortHealthCheckedSeparately()
    {
        var name = "t" + Guid.NewGuid().ToString("N")[..6];
        await using var split = await TestCloud.StartAsync(controlPlanes: 2, nodeArgs: ["--ports-for", $"{name}-control-plane-1=9999"], clusterName: name);
        var lb = split.Provider!.LoadBalancer;
        // Each port is probed on its own schedule: wait until all three have been probed once.
        await Poll.RequireAsync(() => lb.HealthyBackends(9999).Count == 2 && lb.HealthyBackends(30090).Count == 1 && lb.HealthyBackends(6443).Count == 1,
            Poll.Hang, "per-port health");
        Assert.Equal([split.Provider.Subnet.InstanceAddress(0)], lb.HealthyBackends(6443));
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(split.Cp(0), await LbClient.WhoAnswersAsync(split.Lb(30090)));
        }
    }

    [Fact]
    public async Task Forward_NoHealthyBackend_ClosesImmediately()
    {
        await using var cloud = await TestCloud.StartAsync(controlPlanes: 1, workers: 1);
        var lb = cloud.Provider!.LoadBalancer;
        await cloud.Provider.PowerAsync(PowerAction.Crash, [cloud.Cp(0)], CancellationToken.None);
        await Poll.RequireAsync(() => lb.HealthyBackends(9999).Count == 0, Poll.Hang, "no healthy backend");

        // Null means closed or reset (a connection left hanging throws in ReadLineAsync), so no wall-clock bound is needed.
        Assert.Null(await LbClient.WhoAnswersAsync(cloud.Lb(9999)));
        // The worker still listens on 9999 but is never a backend.
        Assert.Equal($"{cloud.Worker(0)} 9999", await WorkerDirectAsync(cloud));
    }

    private static async Task<string?> WorkerDirectAsync(TestCloud cloud)
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(System.Net.IPAddress.Parse(cloud.Info(cloud.Worker(0)).Address), 9999);
        return await LbClient.ReadLineAsync(s);
    }
}
