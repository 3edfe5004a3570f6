using System.Security.Cryptography;
using Asterism.Attestation.Tpm;

namespace Asterism.Attestation.Tests.Tpm;

/// <summary>Untrusted bytes in the tpm payload: every bad input is a Malformed/Oversized verdict, never an exception.</summary>
public sealed class TpmPayloadTests(SwtpmFixture tpm) : IClassFixture<SwtpmFixture>
{
    private TpmValidator Validator()
    {
        var options = new TpmValidatorOptions { TrustAnyKey = true };
        return new TpmValidator(options);
    }

    private async Task<(byte[] Document, byte[] Nonce, AttestationDocument Parsed)> IssueAsync()
    {
        var nonce = RandomNumberGenerator.GetBytes(32);
        var document = await tpm.Session.Issuer.IssueAsync(new byte[32], nonce, CancellationToken.None);
        Assert.True(AttestationDocument.TryParse(document, out var parsed, out _));
        return (document, nonce, parsed);
    }

    [Fact]
    public async Task Validate_GarbagePayload_RefusedAsMalformed()
    {
        var (_, nonce, doc) = await IssueAsync();
        var garbage = new AttestationDocument("tpm", doc.UserData, nonce, RandomNumberGenerator.GetBytes(500)).Encode();

        var verdict = Validator().Validate(garbage, nonce);

        Assert.Equal(AttestationFailure.Malformed, verdict.Failure);
    }

    [Fact]
    public async Task Validate_PayloadTruncatedAtEveryLength_RefusedAsMalformed()
    {
        var (_, nonce, doc) = await IssueAsync();
        var validator = Validator();
        for (var length = 0; length < doc.Payload.Length; length++)
        {
            var truncated = new AttestationDocument("tpm", doc.UserData, nonce, doc.Payload.AsSpan(0, length)).Encode();
            var verdict = validator.Validate(truncated, nonce);
            Assert.True(verdict.Failure == AttestationFailure.Malformed, $"length {length}: {verdict}");
        }
    }

    [Fact]
    public async Task Validate_DocumentTruncatedAtEveryLength_NeverAccepted()
    {
        var (document, nonce, _) = await IssueAsync();
        var validator = Validator();
        for (var length = 0; length < document.Length; length++)
        {
            var verdict = validator.Validate(document.AsSpan(0, length), nonce);
            Assert.True(verdict.Failure == AttestationFailure.Malformed, $"length {length}: {verdict}");
        }
    }

    [Fact]
    public async Task Validate_TrailingBytesAfterPcrs_RefusedAsMalformed()
    {
        var (_, nonce, doc) = await IssueAsync();
        var longer = new AttestationDocument("tpm", doc.UserData, nonce, [.. doc.Payload, 0]).Encode();

        var verdict = Validator().Validate(longer, nonce);

        Assert.Equal(AttestationFailure.Malformed, verdict.Failure);
        Assert.Contains("trailing", verdict.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Validate_OversizedDocument_RefusedAsOversized()
    {
        var (document, nonce, _) = await IssueAsync();
        var oversized = new byte[AttestationDocument.MaxSize + 1];
        document.CopyTo(oversized, 0);

        var verdict = Validator().Validate(oversized, nonce);

        Assert.Equal(AttestationFailure.Oversized, verdict.Failure);
    }

    [Fact]
    public async Task Validate_OversizedFieldLengths_RefusedAsMalformed()
    {
        var (_, nonce, doc) = await IssueAsync();
        var payload = (byte[])doc.Payload.Clone();
        payload[0] = 0xFF; // AK length 0xFFxx: beyond the 1 KiB limit and the data
        var bad = new AttestationDocument("tpm", doc.UserData, nonce, payload).Encode();

        var verdict = Validator().Validate(bad, nonce);

        Assert.Equal(AttestationFailure.Malformed, verdict.Failure);
    }

    [Fact]
    public async Task Validate_RandomBitFlips_NeverThrowAndNeverAccepted()
    {
        var (document, nonce, _) = await IssueAsync();
        var validator = Validator();
        var random = new Random(8);
        for (var i = 0; i < 2000; i++)
        {
            var copy = (byte[])document.Clone();
            var flips = random.Next(1, 4);
            for (var f = 0; f < flips; f++)
            {
                copy[random.Next(copy.Length)] ^= (byte)(1 << random.Next(8));
            }
            var verdict = validator.Validate(copy, nonce);
            Assert.False(verdict.Accepted && !copy.AsSpan().SequenceEqual(document), $"flip set {i} accepted");
        }
    }

    [Fact]
    public void Validate_RandomBytes_NeverThrow()
    {
        var validator = Validator();
        var random = new Random(9);
        for (var i = 0; i < 500; i++)
        {
            var bytes = new byte[random.Next(0, 2048)];
            random.NextBytes(bytes);
            Assert.False(validator.Validate(bytes, new byte[32]).Accepted);
        }
    }
}
