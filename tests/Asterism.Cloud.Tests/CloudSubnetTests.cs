using System.Net;
using System.Net.Sockets;
using Asterism.Protocol;

namespace Asterism.Cloud.Tests;

public class CloudSubnetTests
{
    [Fact]
    public void TryParse_LoopbackSubnet_GivesProviderLbAndInstanceAddresses()
    {
        Assert.True(CloudSubnet.TryParse("127.64.7", out var s, out _));
        Assert.Equal("127.64.7.1", s!.ProviderAddress.ToString());
        Assert.Equal("127.64.7.2", s.LoadBalancerAddress.ToString());
        Assert.Equal("127.64.7.10", s.InstanceAddress(0).ToString());
        Assert.Equal("127.64.7.254", s.InstanceAddress(CloudSubnet.MaxInstances - 1).ToString());
        Assert.Throws<ArgumentOutOfRangeException>(() => s.InstanceAddress(CloudSubnet.MaxInstances));
    }

    [Theory]
    [InlineData("10.0.0")]
    [InlineData("192.168.1")]
    [InlineData("128.0.0")]
    [InlineData("127.1")]
    [InlineData("127.1.2.3")]
    [InlineData("127.256.0")]
    [InlineData("127.01.0")]
    [InlineData("127.-1.0")]
    [InlineData("127.+1.0")]
    [InlineData("127. 1.0")]
    [InlineData("")]
    [InlineData(null)]
    public void TryParse_NotA127Subnet_Refused(string? text)
    {
        Assert.False(CloudSubnet.TryParse(text, out var s, out var error));
        Assert.Null(s);
        Assert.NotEmpty(error);
        Assert.Throws<FormatException>(() => CloudSubnet.Parse(text ?? ""));
    }

    [Fact]
    public void IsFree_ListenerOnProviderAddress_False()
    {
        var subnet = SubnetAllocator.PickFree();
        Assert.InRange(subnet.A, 64, 250);
        Assert.True(SubnetAllocator.IsFree(subnet));
        using var listener = new TcpListener(subnet.ProviderAddress, Ports.Metadata);
        listener.Start();
        Assert.False(SubnetAllocator.IsFree(subnet));
    }

    [Fact]
    public void IsLoopbackV4_OnlyFor127Slash8()
    {
        Assert.True(CloudSubnet.IsLoopbackV4(IPAddress.Parse("127.200.3.4")));
        Assert.False(CloudSubnet.IsLoopbackV4(IPAddress.Parse("10.0.0.1")));
        Assert.False(CloudSubnet.IsLoopbackV4(IPAddress.IPv6Loopback));
    }
}
