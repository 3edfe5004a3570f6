using System.Globalization;
using System.Net;

namespace Asterism.Cloud;

/// <summary>
/// A workspace's own /24 inside 127.0.0.0/8, written "127.A.B". Host .1 is the provider (metadata API),
/// .2 the load balancer, .10 onwards the instances. Nothing outside 127.0.0.0/8 can be expressed.
/// </summary>
public sealed record CloudSubnet
{
    /// <summary>Host number of the first instance.</summary>
    public const int FirstInstanceHost = 10;

    /// <summary>How many instances fit (.10 .. .254).</summary>
    public const int MaxInstances = 254 - FirstInstanceHost + 1;

    private CloudSubnet(byte a, byte b)
    {
        A = a;
        B = b;
    }

    public byte A { get; }
    public byte B { get; }

    /// <summary>"127.A.B", the form stored in spec.json.</summary>
    public string Prefix => string.Create(CultureInfo.InvariantCulture, $"127.{A}.{B}");

    public IPAddress ProviderAddress => Host(1);
    public IPAddress LoadBalancerAddress => Host(2);

    /// <summary>Address of the instance with the given zero-based index.</summary>
    public IPAddress InstanceAddress(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, MaxInstances);
        return Host(FirstInstanceHost + index);
    }

    public static CloudSubnet Create(byte a, byte b) => new(a, b);

    /// <summary>Parses "127.A.B" with decimal octets; anything else (other first octet, a fourth octet, signs) fails.</summary>
    public static bool TryParse(string? text, out CloudSubnet? subnet, out string error)
    {
        subnet = null;
        if (string.IsNullOrEmpty(text))
        {
            error = "subnet is empty; expected 127.A.B";
            return false;
        }
        var parts = text.Split('.');
        if (parts.Length != 3 || parts[0] != "127")
        {
            error = $"subnet '{text}' is not of the form 127.A.B (the local provider only uses loopback addresses)";
            return false;
        }
        if (!TryOctet(parts[1], out var a) || !TryOctet(parts[2], out var b))
        {
            error = $"subnet '{text}' has an octet that is not a number 0-255";
            return false;
        }
        subnet = new CloudSubnet(a, b);
        error = "";
        return true;
    }

    public static CloudSubnet Parse(string text) =>
        TryParse(text, out var subnet, out var error) ? subnet! : throw new FormatException(error);

    /// <summary>True when the address lies in 127.0.0.0/8 (the only range this project ever dials).</summary>
    public static bool IsLoopbackV4(IPAddress address) =>
        address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork && address.GetAddressBytes()[0] == 127;

    public override string ToString() => Prefix;

    private IPAddress Host(int host) => new([127, A, B, (byte)host]);

    private static bool TryOctet(string s, out byte value)
    {
        value = 0;
        if (s.Length is 0 or > 3 || !s.All(char.IsAsciiDigit) || (s.Length > 1 && s[0] == '0'))
        {
            return false;
        }
        return byte.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }
}
