using Asterism.Crypto;
using Asterism.JoinService;

namespace Asterism.Node.Tests.JoinService;

public sealed class RotationSealTests
{
    [Fact]
    public void Open_SealedUnderCurrentSecret_ReturnsNextSecret()
    {
        using var current = MasterSecret.Generate();
        using var next = MasterSecret.Generate();
        var sealedBytes = RotationSeal.Seal(current, next, 1);
        using var opened = RotationSeal.Open(current, sealedBytes, 1);
        Assert.NotNull(opened);
        Assert.True(opened.Key.SequenceEqual(next.Key));
        Assert.True(opened.Salt.SequenceEqual(next.Salt));
    }

    [Fact]
    public void Open_OtherSecretGenerationOrTamperedBytes_Null()
    {
        using var current = MasterSecret.Generate();
        using var other = MasterSecret.Generate();
        using var next = MasterSecret.Generate();
        var sealedBytes = RotationSeal.Seal(current, next, 1);
        Assert.Null(RotationSeal.Open(other, sealedBytes, 1));
        Assert.Null(RotationSeal.Open(current, sealedBytes, 2));
        var tampered = (byte[])sealedBytes.Clone();
        tampered[20] ^= 1;
        Assert.Null(RotationSeal.Open(current, tampered, 1));
        Assert.Null(RotationSeal.Open(current, sealedBytes.AsSpan(0, 20), 1));
        Assert.Null(RotationSeal.Open(current, new byte[5000], 1));
    }
}
