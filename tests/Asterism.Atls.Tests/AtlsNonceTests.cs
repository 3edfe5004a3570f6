using System.Security.Cryptography;

namespace Asterism.Atls.Tests;

public class AtlsNonceTests
{
    [Fact]
    public void ToServerName_RoundTripsThroughParse()
    {
        var nonce = AtlsNonce.Create();
        var name = AtlsNonce.ToServerName(nonce);
        Assert.Matches("^[0-9a-f]{32}\\.[0-9a-f]{32}\\.atls$", name);
        Assert.True(AtlsNonce.TryParseServerName(name, out var parsed));
        Assert.Equal(nonce, parsed);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("127.0.0.1")]
    [InlineData("localhost")]
    [InlineData("0123456789abcdef0123456789abcdef.0123456789abcdef0123456789abcdef.tls")]
    [InlineData("0123456789ABCDEF0123456789abcdef.0123456789abcdef0123456789abcdef.atls")]
    [InlineData("0123456789abcdef0123456789abcdef00123456789abcdef0123456789abcdef.atls")]
    [InlineData("0123456789abcdef0123456789abcdeg.0123456789abcdef0123456789abcdef.atls")]
    public void TryParseServerName_NotANonce_ReturnsFalse(string? name) =>
        Assert.False(AtlsNonce.TryParseServerName(name, out _));

    [Fact]
    public void TryParseAuthorities_OneNonceName_ReturnsNonce()
    {
        var nonce = AtlsNonce.Create();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var authority = AtlsNonce.CreateAuthority(nonce, key, DateTimeOffset.UtcNow);
        Assert.True(AtlsNonce.TryParseAuthorities([authority.Subject], out var parsed));
        Assert.Equal(nonce, parsed);
        Assert.False(AtlsNonce.TryParseAuthorities([authority.Subject, authority.Subject], out _));
        Assert.False(AtlsNonce.TryParseAuthorities([], out _));
        Assert.False(AtlsNonce.TryParseAuthorities(["CN=somebody, O=corp"], out _));
    }
}
