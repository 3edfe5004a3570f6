using System.Security.Cryptography;

namespace Asterism.Tpm.Tests;

/// <summary>Parsers of untrusted bytes throw only <see cref="TpmFormatException"/>.</summary>
public sealed class TpmParserTests
{
    [Fact]
    public void ParsePublic_SoftwareKey_RoundTripsPointAndName()
    {
        using var q = new TestQuotes();
        var key = TpmEccPublicKey.Parse(q.PublicArea);
        Assert.Equal(q.Key.ExportSubjectPublicKeyInfo(), key.ExportSubjectPublicKeyInfo());
        Assert.Equal([0x00, 0x0B, .. SHA256.HashData(q.PublicArea)], key.ComputeName());
        Assert.True(key.IsRestrictedSigningKey);
        Assert.Contains("BEGIN PUBLIC KEY", key.ExportPem());
    }

    [Fact]
    public void ParsePublic_PointNotOnCurve_FormatException()
    {
        using var q = new TestQuotes();
        var bytes = q.PublicArea.ToArray();
        bytes[^1] ^= 0x01;
        Assert.Throws<TpmFormatException>(() => TpmEccPublicKey.Parse(bytes));
    }

    [Fact]
    public void ParsePublic_RsaTypeOrOtherCurveOrTemplate_FormatException()
    {
        using var q = new TestQuotes();
        var rsa = q.PublicArea.ToArray();
        rsa[1] = 0x01;
        Assert.Throws<TpmFormatException>(() => TpmEccPublicKey.Parse(rsa));
        var p384 = q.PublicArea.ToArray();
        p384[19] = 0x04;
        Assert.Throws<TpmFormatException>(() => TpmEccPublicKey.Parse(p384));
        Assert.Throws<TpmFormatException>(() => TpmEccPublicKey.Parse(TpmAttestationKey.Template()));
    }

    [Fact]
    public void ParsePublic_OversizedPointOrTrailingBytesOrHuge_FormatException()
    {
        using var q = new TestQuotes();
        var trailing = q.PublicArea.Append((byte)0).ToArray();
        Assert.Throws<TpmFormatException>(() => TpmEccPublicKey.Parse(trailing));
        var oversized = q.PublicArea.ToArray();
        oversized[20] = 0x00;
        oversized[21] = 0x21; // x claims 33 bytes
        Assert.Throws<TpmFormatException>(() => TpmEccPublicKey.Parse(oversized));
        Assert.Throws<TpmFormatException>(() => TpmEccPublicKey.Parse(new byte[TpmEccPublicKey.MaxPublicAreaSize + 1]));
    }

    [Fact]
    public void ParseAttest_Oversized_FormatException()
    {
        Assert.Throws<TpmFormatException>(() => TpmQuoteAttestation.Parse(new byte[TpmQuoteAttestation.MaxAttestSize + 1]));
    }

    [Fact]
    public void ParseAttest_TooManyBanksSelectBytesTrailingOrBadYesNo_FormatException()
    {
        var w = new TpmWriter().WriteUInt32(0xFF544347).WriteUInt16(0x8018).WriteUInt16(0).WriteUInt16(0)
            .WriteUInt64(0).WriteUInt32(0).WriteUInt32(0).WriteByte(0).WriteUInt64(0);
        var prefix = w.ToArray();
        Assert.Throws<TpmFormatException>(() => TpmQuoteAttestation.Parse([.. prefix, 0xFF, 0xFF, 0xFF, 0xFF]));
        Assert.Throws<TpmFormatException>(() => TpmQuoteAttestation.Parse([.. prefix, 0, 0, 0, 1, 0x00, 0x0B, 200]));
        Assert.Throws<TpmFormatException>(() => TpmQuoteAttestation.Parse([.. prefix, 0, 0, 0, 0, 0, 0, 0xAA]));
        var badSafe = prefix.ToArray();
        badSafe[^9] = 2;
        Assert.Throws<TpmFormatException>(() => TpmQuoteAttestation.Parse([.. badSafe, 0, 0, 0, 0, 0, 0]));
        Assert.NotNull(TpmQuoteAttestation.Parse([.. prefix, 0, 0, 0, 0, 0, 0]));
    }

    [Fact]
    public void ParseSignature_RsaOrSha1OrLongComponent_FormatException()
    {
        Assert.Throws<TpmFormatException>(() => TpmEcdsaSignature.Parse([0x00, 0x14, 0x00, 0x0B, 0, 0]));
        Assert.Throws<TpmFormatException>(() => TpmEcdsaSignature.Parse([0x00, 0x18, 0x00, 0x04, 0, 1, 1, 0, 1, 1]));
        var longR = new TpmWriter().WriteUInt16(0x18).WriteUInt16(0x0B).WriteSized(Enumerable.Repeat((byte)1, 33).ToArray()).WriteSized([1]).ToArray();
        var parsed = TpmEcdsaSignature.Parse(longR);
        Assert.Throws<TpmFormatException>(() => parsed.ToP1363());
    }

    [Fact]
    public void ParseSignature_ShortComponents_LeftPadded()
    {
        var sig = new TpmWriter().WriteUInt16(0x18).WriteUInt16(0x0B).WriteSized([0x01, 0x02]).WriteSized([0x00, 0x00, 0x03]).ToArray();
        var p1363 = TpmEcdsaSignature.Parse(sig).ToP1363();
        Assert.Equal(0x01, p1363[30]);
        Assert.Equal(0x02, p1363[31]);
        Assert.Equal(0x03, p1363[63]);
        Assert.Equal(new byte[30], p1363[..30]);
    }

    [Fact]
    public void Parsers_RandomBytes_OnlyFormatException()
    {
        var rng = new Random(20261125);
        using var q = new TestQuotes();
        var validAttest = TestQuotes.Attest(new byte[32], TestQuotes.Pcrs(0, 15));
        for (var i = 0; i < 3000; i++)
        {
            var len = rng.Next(0, 200);
            var bytes = new byte[len];
            rng.NextBytes(bytes);
            if (i % 3 == 0 && len > 6)
            {
                // Keep a valid prefix so parsing gets deeper before failing.
                validAttest.AsSpan(0, Math.Min(len, validAttest.Length) / 2).CopyTo(bytes);
            }
            AssertOnlyFormat(() => TpmQuoteAttestation.Parse(bytes));
            AssertOnlyFormat(() => TpmEcdsaSignature.Parse(bytes).ToP1363());
            AssertOnlyFormat(() => TpmEccPublicKey.Parse(bytes));
            var result = TpmQuoteVerifier.Verify(q.PublicKey, bytes, bytes, new byte[32], TestQuotes.Pcrs(0, 15));
            Assert.False(result.IsValid);
        }
    }

    private static void AssertOnlyFormat(Action parse)
    {
        try
        {
            parse();
        }
        catch (TpmFormatException)
        {
        }
    }
}
