namespace Asterism.Attestation.Tests;

public class AttestationDocumentTests
{
    private static AttestationDocument Sample() => new("simulated", new byte[32].AsSpan(), Enumerable.Range(0, 32).Select(i => (byte)i).ToArray(), [1, 2, 3]);

    [Fact]
    public void TryParse_EncodedDocument_RoundTrips()
    {
        Assert.True(AttestationDocument.TryParse(Sample().Encode(), out var doc, out _));
        Assert.Equal("simulated", doc.VariantName);
        Assert.Equal(Sample().Nonce, doc.Nonce);
        Assert.Equal(Sample().UserData, doc.UserData);
        Assert.Equal(new byte[] { 1, 2, 3 }, doc.Payload);
    }

    [Fact]
    public void TryParse_EveryTruncation_IsMalformed()
    {
        var bytes = Sample().Encode();
        for (var length = 0; length < bytes.Length; length++)
        {
            Assert.False(AttestationDocument.TryParse(bytes.AsSpan(0, length), out _, out var refusal));
            Assert.Equal(AttestationFailure.Malformed, refusal.Failure);
        }
    }

    [Fact]
    public void TryParse_TrailingByte_IsMalformed()
    {
        Assert.False(AttestationDocument.TryParse([.. Sample().Encode(), 0], out _, out var refusal));
        Assert.Equal(AttestationFailure.Malformed, refusal.Failure);
    }

    [Fact]
    public void TryParse_TooLarge_IsOversized()
    {
        Assert.False(AttestationDocument.TryParse(new byte[AttestationDocument.MaxSize + 1], out _, out var refusal));
        Assert.Equal(AttestationFailure.Oversized, refusal.Failure);
    }

    [Fact]
    public void TryParse_OtherVersion_IsUnsupportedVersion()
    {
        var bytes = Sample().Encode();
        bytes[4] = 1;
        Assert.False(AttestationDocument.TryParse(bytes, out _, out var refusal));
        Assert.Equal(AttestationFailure.UnsupportedVersion, refusal.Failure);
    }

    [Fact]
    public void TryParse_HugePayloadLength_IsMalformed()
    {
        var bytes = Sample().Encode();
        bytes[^7] = 0x7f;
        Assert.False(AttestationDocument.TryParse(bytes, out _, out var refusal));
        Assert.Equal(AttestationFailure.Malformed, refusal.Failure);
    }

    [Fact]
    public void TryParse_RandomAndMutatedBytes_NeverThrows()
    {
        var rng = new Random(42);
        var valid = Sample().Encode();
        for (var i = 0; i < 2000; i++)
        {
            byte[] bytes;
            if (i % 2 == 0)
            {
                bytes = new byte[rng.Next(0, 120)];
                rng.NextBytes(bytes);
            }
            else
            {
                bytes = (byte[])valid.Clone();
                bytes[rng.Next(bytes.Length)] ^= (byte)rng.Next(1, 256);
            }
            AttestationDocument.TryParse(bytes, out _, out _);
        }
    }

    [Fact]
    public void Constructor_OverlongFields_Throw()
    {
        Assert.Throws<ArgumentException>(() => new AttestationDocument("simulated", new byte[65], [], []));
        Assert.Throws<ArgumentException>(() => new AttestationDocument("simulated", [], new byte[65], []));
        Assert.Throws<ArgumentException>(() => new AttestationDocument("simulated", [], [], new byte[AttestationDocument.MaxSize]));
    }
}
