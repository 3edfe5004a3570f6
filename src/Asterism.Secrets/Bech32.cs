namespace Asterism.Secrets;

/// <summary>
/// Bech32 (BIP 173) as age uses it for its keys: the checksum and alphabet of BIP 173 without its 90-character limit
/// (an age key is 62 or 74 characters, so our own limit is small). One case per string; upper-case strings (identities)
/// are accepted and produced upper-case.
/// </summary>
public static class Bech32
{
    private const string Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    private const int MaxLength = 200;
    private static readonly uint[] Generator = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

    /// <summary>Encodes <paramref name="data"/> under <paramref name="hrp"/> (lower case; <paramref name="upper"/> makes the whole string upper case).</summary>
    public static string Encode(string hrp, ReadOnlySpan<byte> data, bool upper = false)
    {
        var values = ConvertBits(data, 8, 5, pad: true)!;
        var lowerHrp = hrp.ToLowerInvariant();
        var checksum = CreateChecksum(lowerHrp, values);
        var chars = new char[lowerHrp.Length + 1 + values.Length + 6];
        lowerHrp.CopyTo(0, chars, 0, lowerHrp.Length);
        chars[lowerHrp.Length] = '1';
        var at = lowerHrp.Length + 1;
        foreach (var v in values.Concat(checksum))
        {
            chars[at++] = Charset[v];
        }
        var text = new string(chars);
        Array.Clear(chars);
        Array.Clear(values);
        return upper ? text.ToUpperInvariant() : text;
    }

    /// <summary>Decodes a string whose human-readable part must be <paramref name="expectedHrp"/> (case-insensitive); null when it is not valid bech32.</summary>
    public static byte[]? Decode(string text, string expectedHrp)
    {
        if (text.Length > MaxLength || text.Length < 8)
        {
            return null;
        }
        if (text.Any(c => c < 33 || c > 126) || (text.Any(char.IsAsciiLetterLower) && text.Any(char.IsAsciiLetterUpper)))
        {
            return null;
        }
        var lower = text.ToLowerInvariant();
        var separator = lower.LastIndexOf('1');
        if (separator < 1 || separator + 7 > lower.Length || lower[..separator] != expectedHrp.ToLowerInvariant())
        {
            return null;
        }
        var values = new byte[lower.Length - separator - 1];
        for (var i = 0; i < values.Length; i++)
        {
            var index = Charset.IndexOf(lower[separator + 1 + i], StringComparison.Ordinal);
            if (index < 0)
            {
                return null;
            }
            values[i] = (byte)index;
        }
        if (Polymod(ExpandHrp(lower[..separator]).Concat(values)) != 1)
        {
            return null;
        }
        var result = ConvertBits(values.AsSpan(0, values.Length - 6), 5, 8, pad: false);
        Array.Clear(values);
        return result;
    }

    private static byte[] CreateChecksum(string hrp, byte[] values)
    {
        var polymod = Polymod(ExpandHrp(hrp).Concat(values).Concat(new byte[6])) ^ 1;
        var checksum = new byte[6];
        for (var i = 0; i < 6; i++)
        {
            checksum[i] = (byte)((polymod >> (5 * (5 - i))) & 31);
        }
        return checksum;
    }

    private static IEnumerable<byte> ExpandHrp(string hrp) =>
        hrp.Select(c => (byte)(c >> 5)).Append((byte)0).Concat(hrp.Select(c => (byte)(c & 31)));

    private static uint Polymod(IEnumerable<byte> values)
    {
        uint chk = 1;
        foreach (var v in values)
        {
            var top = chk >> 25;
            chk = ((chk & 0x1ffffff) << 5) ^ v;
            for (var i = 0; i < 5; i++)
            {
                if (((top >> i) & 1) != 0)
                {
                    chk ^= Generator[i];
                }
            }
        }
        return chk;
    }

    private static byte[]? ConvertBits(ReadOnlySpan<byte> data, int from, int to, bool pad)
    {
        var acc = 0;
        var bits = 0;
        var result = new List<byte>(data.Length * from / to + 1);
        var maxValue = (1 << to) - 1;
        foreach (var value in data)
        {
            if (value >> from != 0)
            {
                return null;
            }
            acc = (acc << from) | value;
            bits += from;
            while (bits >= to)
            {
                bits -= to;
                result.Add((byte)((acc >> bits) & maxValue));
            }
        }
        if (pad)
        {
            if (bits > 0)
            {
                result.Add((byte)((acc << (to - bits)) & maxValue));
            }
        }
        else if (bits >= from || ((acc << (to - bits)) & maxValue) != 0)
        {
            return null;
        }
        var array = result.ToArray();
        CollectionsMarshalClear(result);
        return array;
    }

    private static void CollectionsMarshalClear(List<byte> list) =>
        System.Runtime.InteropServices.CollectionsMarshal.AsSpan(list).Clear();
}
