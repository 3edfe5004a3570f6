using System.Net;
using System.Net.Sockets;
using Asterism.Protocol;

namespace Asterism.Cloud;

/// <summary>Picks a free workspace /24 (127.[64-250].[0-255]) for `asterism create`.</summary>
public static class SubnetAllocator
{
    /// <summary>
    /// Tries random subnets until one has nothing listening on its provider address (127.A.B.1:8080) nor its load
    /// balancer's ports. Throws <see cref="InvalidOperationException"/> when every attempt found a listener.
    /// </summary>
    public static CloudSubnet PickFree(Random? random = null, int attempts = 64)
    {
        random ??= Random.Shared;
        for (var i = 0; i < attempts; i++)
        {
            var subnet = CloudSubnet.Create((byte)random.Next(64, 251), (byte)random.Next(0, 256));
            if (IsFree(subnet))
            {
                return subnet;
            }
        }
        throw new InvalidOperationException($"no free 127.A.B subnet found after {attempts} attempts");
    }

    /// <summary>True when nothing accepts connections on the subnet's provider and load-balancer ports.</summary>
    public static bool IsFree(CloudSubnet subnet)
    {
        ArgumentNullException.ThrowIfNull(subnet);
        return !Listens(subnet.ProviderAddress, Ports.Metadata)
            && Ports.LoadBalanced.All(p => !Listens(subnet.LoadBalancerAddress, p));
    }

    private static bool Listens(IPAddress address, int port)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            // A loopback connect either succeeds or is refused at once; the timeout only guards odd firewalls.
            var connect = socket.ConnectAsync(address, port);
            return connect.Wait(TimeSpan.FromMilliseconds(500)) && socket.Connected;
        }
        catch (AggregateException)
        {
            return false;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
