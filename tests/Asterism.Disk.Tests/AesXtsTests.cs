using System.Globalization;
using System.Security.Cryptography;

namespace Asterism.Disk.Tests;

public sealed class AesXtsTests
{
    private static readonly byte[] IeeeKey = Convert.FromHexString(
        "2718281828459045235360287471352662497757247093699959574966967627" +
        "3141592653589793238462643383279502884197169399375105820974944592");

    public static TheoryData<int, ulong, string> IeeeVectors()
    {
        var data = new TheoryData<int, ulong, string>();
        foreach (var line in File.ReadAllLines(Path.Combine(AppContext.BaseDirectory, "testdata", "ieee1619-xts-aes-256.txt")))
        {
            if (line.StartsWith('#') || line.Length == 0)
            {
                continue;
            }
            var parts = line.Split(' ');
            data.Add(int.Parse(parts[0], CultureInfo.InvariantCulture), ulong.Parse(parts[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture), parts[2]);
        }
        return data;
    }

    private static byte[] Pattern512()
    {
        var p = new byte[512];
        for (var i = 0; i < p.Length; i++)
        {
            p[i] = (byte)i;
        }
        return p;
    }

    [Theory]
    [MemberData(nameof(IeeeVectors))]
    public void EncryptUnit_Ieee1619Vector_MatchesCiphertext(int vector, ulong sequence, string ciphertextHex)
    {
        foreach (var software in new[] { false, true })
        {
            using var xts = new AesXts(IeeeKey, software);
            var plain = Pattern512();
            var cipher = new byte[512];
            xts.EncryptUnit(plain, cipher, sequence);
            Assert.True(ciphertextHex == Convert.ToHexStringLower(cipher), $"vector {vector} software={software}");
            var back = new byte[512];
            xts.DecryptUnit(cipher, back, sequence);
            Assert.Equal(plain, back);
        }
    }

    [Theory]
    [MemberData(nameof(IeeeVectors))]
    public void EncryptUnit_Ieee1619VectorOnEveryPath_MatchesCiphertext(int vector, ulong sequence, string ciphertextHex)
    {
        foreach (var path in new[] { XtsPath.Software, XtsPath.AesNi128, XtsPath.AesNi256, XtsPath.AesNi512 })
        {
            using var xts = new AesXts(IeeeKey, path);
            var cipher = new byte[512];
            xts.EncryptUnit(Pattern512(), cipher, sequence);
            Assert.True(ciphertextHex == Convert.ToHexStringLower(cipher), $"vector {vector} path={path}");
        }
    }

    [Fact]
    public void EncryptUnits_HardwareAndSoftware_AgreeOnOddBlockCounts()
    {
        var key = RandomNumberGenerator.GetBytes(64);
        using var hw = new AesXts(key);
        using var sw = new AesXts(key, forceSoftware: true);
        foreach (var len in new[] { 16, 48, 112, 128, 144, 512, 4096, 4112 })
        {
            var plain = RandomNumberGenerator.GetBytes(len);
            var a = new byte[len];
            var b = new byte[len];
            hw.EncryptUnit(plain, a, 0x1234_5678_9abcUL);
            sw.EncryptUnit(plain, b, 0x1234_5678_9abcUL);
            Assert.Equal(a, b);
            hw.DecryptUnit(a, b, 0x1234_5678_9abcUL);
            Assert.Equal(plain, b);
        }
    }

    [Fact]
    public void EncryptUnit_NotMultipleOf16_Throws()
    {
        using var xts = new AesXts(IeeeKey);
        Assert.Throws<ArgumentException>(() => xts.EncryptUnit(new byte[17], new byte[17], 0));
        Assert.Throws<ArgumentException>(() => xts.EncryptUnit(Array.Empty<byte>(), Array.Empty<byte>(), 0));
        Assert.Throws<ArgumentException>(() => xts.EncryptUnits(new byte[4096], new byte[4096], 1000, 0, 1));
        Assert.Throws<ArgumentException>(() => new AesXts(new byte[32]));
    }

    [Fact]
    public void EncryptUnits_SectorTweakStep_EqualsPerUnitTweaks()
    {
        var key = RandomNumberGenerator.GetBytes(64);
        using var xts = new AesXts(key);
        var plain = RandomNumberGenerator.GetBytes(3 * 4096);
        var all = new byte[plain.Length];
        xts.EncryptUnits(plain, all, 4096, 5 * 8, 8);
        for (var i = 0; i < 3; i++)
        {
            var one = new byte[4096];
            xts.EncryptUnit(plain.AsSpan(i * 4096, 4096), one, (ulong)(5 + i) * 8);
            Assert.Equal(one, all.AsSpan(i * 4096, 4096).ToArray());
        }
    }

    [Theory]
    [InlineData(nameof(XtsPath.AesNi128))]
    [InlineData(nameof(XtsPath.AesNi256))]
    [InlineData(nameof(XtsPath.AesNi512))]
    public void EncryptUnit_EachHardwarePath_MatchesSoftwareOnRandomData(string pathName)
    {
        var path = Enum.Parse<XtsPath>(pathName);
        // This CPU (VAES, AVX-512) runs every path; a machine without one must say so rather than pass silently.
        Assert.True(AesXts.IsSupported(path), $"{path} is not supported on this machine");
        var key = RandomNumberGenerator.GetBytes(64);
        using var vector = new AesXts(key, path);
        using var scalar = new AesXts(key, XtsPath.Software);
        Assert.Equal(path, vector.Path);
        // Every group/tail split around the eight-block groups, a whole sector, and unit numbers whose tweaks
        // carry out of the top bit at different points.
        var lengths = Enumerable.Range(1, 40).Select(b => b * 16).Concat([4096, 4096 + 16, 8 * 4096]);
        ulong[] units = [0, 1, 0x1234_5678_9abc, ulong.MaxValue, (ulong)RandomNumberGenerator.GetInt32(int.MaxValue) << 20];
        foreach (var len in lengths)
        {
            foreach (var unit in units)
            {
                var plain = RandomNumberGenerator.GetBytes(len);
                var expected = new byte[len];
                var actual = new byte[len];
                scalar.EncryptUnit(plain, expected, unit);
                vector.EncryptUnit(plain, actual, unit);
                Assert.True(expected.AsSpan().SequenceEqual(actual), $"{path} encrypt len={len} unit={unit:x}");
                vector.DecryptUnit(expected, actual, unit);
                Assert.True(plain.AsSpan().SequenceEqual(actual), $"{path} decrypt len={len} unit={unit:x}");
            }
        }
    }

    [Fact]
    public void Constructor_Auto_PicksFastestMeasuredPath()
    {
        using var xts = new AesXts(IeeeKey);
        Assert.Equal(AesXts.BestPath(), xts.Path);
        Assert.True(xts.IsHardwareAccelerated);
        Assert.Equal(XtsPath.AesNi256, AesXts.BestPath()); // this machine has AVX2; AesNi512 measured slower
    }

    [Fact]
    public void Dispose_HardwarePath_ZeroesKeySchedules()
    {
        using var xts = new AesXts(RandomNumberGenerator.GetBytes(64), XtsPath.AesNi512);
        var schedules = new[] { "_encData", "_decData", "_encTweak" }
            .Select(f => (System.Runtime.Intrinsics.Vector128<byte>[])typeof(AesXts)
                .GetField(f, System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(xts)!)
            .ToArray();
        Assert.All(schedules, k => Assert.Contains(k, r => r != default));
        xts.Dispose();
        Assert.All(schedules, k => Assert.All(k, r => Assert.Equal(default, r)));
        Assert.Throws<ObjectDisposedException>(() => xts.EncryptUnit(new byte[16], new byte[16], 0));
    }
}
