using System.Security.Cryptography;

namespace Asterism.Crypto.Tests;

public class KeyDerivationTests
{
    private static byte[] Fill(byte value, int length = 32) => Enumerable.Repeat(value, length).ToArray();

    private static byte[] Range(int start, int length) => Enumerable.Range(start, length).Select(i => (byte)i).ToArray();

    [Theory]
    [InlineData(0x00, "00000000-0000-0000-0000-000000000000", "2b5c829f691bfd4232f8aac464bccc07e605c7c8e82cbca09837e86d0b6d0665")]
    [InlineData(0xFF, "ffffffff-ffff-ffff-ffff-ffffffffffff", "1484aa39d3415e906e07940ff215d8b1eee705d3027dba93306af4abff4f70be")]
    public void DeriveDiskKey_ConstellationVectors_Match(byte fill, string uuid, string expectedHex)
    {
        using var master = MasterSecret.FromBytes(Fill(fill), Fill(fill));
        using var key = KeyDerivation.DeriveDiskKey(master, uuid);
        Assert.Equal(expectedHex, Convert.ToHexStringLower(key.Span));
    }

    [Fact]
    public void DeriveClusterId_ConstellationVector_Matches()
    {
        var id = KeyDerivation.DeriveClusterId(Range(0x00, 32), Range(0x20, 32));
        Assert.Equal("128c164378fe8767f998fbdfe4b4d6463ec5ae1b664ea5999bc27417607ae9b6", Convert.ToHexStringLower(id));
    }

    [Fact]
    public void DeriveMeasurementSecret_ConstellationVector_Matches()
    {
        using var master = MasterSecret.FromBytes(Range(0x40, 32), Range(0x60, 32));
        using var secret = KeyDerivation.DeriveMeasurementSecret(master);
        Assert.Equal("4790578891f3fe6cc22cb661ecdc1b7e33121b1287546a52ba33a9136719c213", Convert.ToHexStringLower(secret.Span));
    }

    [Fact]
    public void Hkdf_Rfc5869A1_Matches()
    {
        var okm = new byte[42];
        HKDF.DeriveKey(HashAlgorithmName.SHA256, Fill(0x0b, 22), okm, Range(0x00, 13), Range(0xf0, 10));
        Assert.Equal("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865", Convert.ToHexStringLower(okm));
    }

    [Fact]
    public void Hkdf_Rfc5869A2_Matches()
    {
        var okm = new byte[82];
        HKDF.DeriveKey(HashAlgorithmName.SHA256, Range(0x00, 80), okm, Range(0x60, 80), Range(0xb0, 80));
        Assert.Equal(
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
            Convert.ToHexStringLower(okm));
    }

    [Theory]
    [InlineData("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF")]
    [InlineData("ffffffff-ffff-ffff-ffff-fffffffffff")]
    [InlineData("ffffffffffffffffffffffffffffffffffff")]
    [InlineData("")]
    [InlineData("gfffffff-ffff-ffff-ffff-ffffffffffff")]
    public void DeriveDiskKey_NonCanonicalUuid_Rejected(string uuid)
    {
        using var master = MasterSecret.Generate();
        Assert.Throws<ArgumentException>(() => KeyDerivation.DeriveDiskKey(master, uuid));
    }

    [Fact]
    public void DeriveKey_EmptySalt_Rejected()
    {
        Assert.Throws<ArgumentException>(() => KeyDerivation.DeriveKey(Fill(1), [], "x"));
    }

    [Fact]
    public void DeriveDiskKey_DifferentDisks_DifferentKeys()
    {
        using var master = MasterSecret.Generate();
        using var a = KeyDerivation.DeriveDiskKey(master, "00000000-0000-0000-0000-000000000001");
        using var b = KeyDerivation.DeriveDiskKey(master, "00000000-0000-0000-0000-000000000002");
        Assert.NotEqual(a, b);
    }

    [Fact]
    public void SecretBytes_ToStringAndDispose_RedactedAndZeroed()
    {
        var raw = Fill(0x41);
        var secret = new SecretBytes(raw);
        Assert.Equal("[redacted]", secret.ToString());
        Assert.Equal("[redacted]", $"{secret}");
        secret.Dispose();
        Assert.All(raw, b => Assert.Equal(0, b));
        Assert.Throws<ObjectDisposedException>(() => secret.Span.Length);
    }
}
