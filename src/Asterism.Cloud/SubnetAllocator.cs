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
        // A non-blocking connect and a poll on this thread: a loopback connect succeeds or is refused at once, and the
        // answer must not depend on the thread pool (an async connect's completion waited behind starved workers for
        // longer than its timeout under load, and a listening address was taken for free). The poll's limit only
        // guards odd firewalls that drop instead of refusing.
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { Blocking = false };
        try
        {
            socket.Connect(address, port);
            return true;
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.InProgress)
        {
            // In progress: wait for writability (connected) or an error (refused) below.
        }
        catch (SocketException)
        {
            return false;
        }
        if (!socket.Poll(ConnectLimit, SelectMode.SelectWrite))
        {
            return false;
        }
        return socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Error) is 0;
    }

    /// <summary>How long a connect may hang before the address counts as not listening.</summary>
    private static readonly TimeSpan ConnectLimit = TimeSpan.FromSeconds(2);
}
