using System.Security.Cryptography;

namespace Asterism.Tpm.Tests;

public sealed class TpmQuoteVerifierTests
{
    private static readonly byte[] Nonce = SHA256.HashData("user data and nonce"u8);

    [Fact]
    public void Verify_WellFormedQuote_Valid()
    {
        using var q = new TestQuotes();
        var pcrs = TestQuotes.Pcrs(0, 4, 15);
        var attest = TestQuotes.Attest(Nonce, pcrs);

        var result = TpmQuoteVerifier.Verify(q.PublicKey, attest, q.Sign(attest), Nonce, pcrs);

        Assert.True(result.IsValid, result.ToString());
        Assert.Equal(new TpmClockInfo(12345, 1, 0, true), result.Attestation!.ClockInfo);
    }

    [Fact]
    public void Verify_AttestChangedAfterSigning_BadSignature()
    {
        using var q = new TestQuotes();
        var pcrs = TestQuotes.Pcrs(0, 15);
        var attest = TestQuotes.Attest(Nonce, pcrs);
        var sig = q.Sign(attest);
        attest[20] ^= 0x01; // inside qualifiedSigner: still parses

        Assert.Equal(TpmQuoteStatus.BadSignature, TpmQuoteVerifier.Verify(q.PublicKey, attest, sig, Nonce, pcrs).Status);
    }

    [Fact]
    public void Verify_SignedByOtherKey_BadSignature()
    {
        using var q = new TestQuotes();
        using var other = new TestQuotes();
        var pcrs = TestQuotes.Pcrs(15);
        var attest = TestQuotes.Attest(Nonce, pcrs);

        Assert.Equal(TpmQuoteStatus.BadSignature, TpmQuoteVerifier.Verify(q.PublicKey, attest, other.Sign(attest), Nonce, pcrs).Status);
    }

    [Fact]
    public void Verify_OtherNonce_ExtraDataMismatch()
    {
        using var q = new TestQuotes();
        var pcrs = TestQuotes.Pcrs(15);
        var attest = TestQuotes.Attest(Nonce, pcrs);

        Assert.Equal(TpmQuoteStatus.ExtraDataMismatch, TpmQuoteVerifier.Verify(q.PublicKey, attest, q.Sign(attest), new byte[32], pcrs).Status);
    }

    [Fact]
    public void Verify_PcrValueChanged_PcrDigestMismatch()
    {
        using var q = new TestQuotes();
        var pcrs = TestQuotes.Pcrs(0, 15);
        var attest = TestQuotes.Attest(Nonce, pcrs);
        pcrs[15] = new byte[32];

        Assert.Equal(TpmQuoteStatus.PcrDigestMismatch, TpmQuoteVerifier.Verify(q.PublicKey, attest, q.Sign(attest), Nonce, pcrs).Status);
    }

    [Fact]
    public void Verify_ValuesForOtherPcrs_PcrSelectionMismatch()
    {
        using var q = new TestQuotes();
        var attest = TestQuotes.Attest(Nonce, TestQuotes.Pcrs(0, 15));

        Assert.Equal(TpmQuoteStatus.PcrSelectionMismatch, TpmQuoteVerifier.Verify(q.PublicKey, attest, q.Sign(attest), Nonce, TestQuotes.Pcrs(0)).Status);
        Assert.Equal(TpmQuoteStatus.PcrSelectionMismatch, TpmQuoteVerifier.Verify(q.PublicKey, attest, q.Sign(attest), Nonce, TestQuotes.Pcrs(0, 15, 16)).Status);
    }

    [Fact]
    public void Verify_UnrestrictedKey_Refused()
    {
        // An unrestricted signing key signs anything, including a forged TPMS_ATTEST: its quotes prove nothing.
        using var q = new TestQuotes(TpmAttestationKey.KeyAttributes & ~TpmObjectAttributes.Restricted);
        var pcrs = TestQuotes.Pcrs(15);
        var attest = TestQuotes.Attest(Nonce, pcrs);

        Assert.Equal(TpmQuoteStatus.KeyNotRestricted, TpmQuoteVerifier.Verify(q.PublicKey, attest, q.Sign(attest), Nonce, pcrs).Status);
    }

    [Fact]
    public void Verify_WrongMagicOrType_Malformed()
    {
        using var q = new TestQuotes();
        var pcrs = TestQuotes.Pcrs(15);
        var badMagic = TestQuotes.Attest(Nonce, pcrs, magic: 0x01020304);
        var certify = TestQuotes.Attest(Nonce, pcrs, type: 0x8017);

        Assert.Equal(TpmQuoteStatus.Malformed, TpmQuoteVerifier.Verify(q.PublicKey, badMagic, q.Sign(badMagic), Nonce, pcrs).Status);
        Assert.Equal(TpmQuoteStatus.Malformed, TpmQuoteVerifier.Verify(q.PublicKey, certify, q.Sign(certify), Nonce, pcrs).Status);
    }

    [Fact]
    public void Verify_TruncatedAtEveryLength_MalformedNeverThrows()
    {
        using var q = new TestQuotes();
        var pcrs = TestQuotes.Pcrs(0, 15);
        var attest = TestQuotes.Attest(Nonce, pcrs);
        var sig = q.Sign(attest);
        for (var n = 0; n < attest.Length; n++)
        {
            Assert.Equal(TpmQuoteStatus.Malformed, TpmQuoteVerifier.Verify(q.PublicKey, attest.AsSpan(0, n), sig, Nonce, pcrs).Status);
        }
        for (var n = 0; n < sig.Length; n++)
        {
            Assert.Equal(TpmQuoteStatus.Malformed, TpmQuoteVerifier.Verify(q.PublicKey, attest, sig.AsSpan(0, n), Nonce, pcrs).Status);
        }
    }

    [Fact]
    public void ComputePcrDigest_KnownValues_HashOfConcatenationInIndexOrder()
    {
        var pcrs = new Dictionary<int, byte[]> { [15] = Enumerable.Repeat((byte)0xBB, 32).ToArray(), [3] = Enumerable.Repeat((byte)0xAA, 32).ToArray() };
        var digest = TpmQuoteVerifier.ComputePcrDigest([TpmPcrSelection.Sha256([15, 3])], pcrs);
        Assert.Equal(SHA256.HashData([.. pcrs[3], .. pcrs[15]]), digest);
    }
}
