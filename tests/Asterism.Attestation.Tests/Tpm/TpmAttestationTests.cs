using System.Buffers.Binary;
using System.Security.Cryptography;
using Asterism.Attestation.Simulated;
using Asterism.Attestation.Tpm;
using Asterism.Tpm;
using Microsoft.Extensions.Logging;

namespace Asterism.Attestation.Tests.Tpm;

public sealed class TpmAttestationTests(SwtpmFixture tpm) : IClassFixture<SwtpmFixture>
{
    private static readonly byte[] UserData = SHA256.HashData("tls key"u8);

    private readonly CollectingLogger<TpmValidator> _log = new();

    private TpmValidator Validator(Measurements? measurements = null, bool trustAny = false, string? trustedKey = null)
    {
        var options = new TpmValidatorOptions { Measurements = measurements ?? Measurements.Empty, TrustAnyKey = trustAny };
        options.TrustedKeyFingerprints.Add(trustedKey ?? tpm.Session.KeyFingerprint);
        return new TpmValidator(options, _log);
    }

    private async Task<(byte[] Document, byte[] Nonce)> IssueAsync(byte[]? userData = null)
    {
        var nonce = RandomNumberGenerator.GetBytes(32);
        var document = await tpm.Session.Issuer.IssueAsync(userData ?? UserData, nonce, CancellationToken.None);
        return (document, nonce);
    }

    private static TpmQuotePayload PayloadOf(byte[] document)
    {
        Assert.True(AttestationDocument.TryParse(document, out var doc, out _));
        Assert.True(TpmQuotePayload.TryParse(doc.Payload, out var payload, out var error), error);
        return payload;
    }

    private static byte[] Rewrap(byte[] document, TpmQuotePayload payload, byte[]? userData = null)
    {
        Assert.True(AttestationDocument.TryParse(document, out var doc, out _));
        return new AttestationDocument(doc.VariantName, userData ?? doc.UserData, doc.Nonce, payload.Encode()).Encode();
    }

    [Fact]
    public async Task Validate_FreshQuote_AcceptedWithPcrsAndKey()
    {
        var pcr4 = await tpm.Session.Pcrs.ReadAsync(4, CancellationToken.None);
        var measurements = new Measurements().With(4, new Measurement(pcr4)).WithZeroPcr15();
        var (document, nonce) = await IssueAsync();

        var verdict = Validator(measurements).Validate(document, nonce);

        Assert.True(verdict.Accepted, verdict.ToString());
        Assert.Equal(UserData, verdict.UserData);
        Assert.Equal(AttestationVariant.Tpm, verdict.Facts!.Variant);
        Assert.Equal(16, verdict.Facts.Pcrs.Count);
        Assert.Equal(pcr4, verdict.Facts.Pcrs[4]);
        Assert.Equal(tpm.Session.KeyFingerprint, verdict.Facts.AttestationKeyFingerprint);
        Assert.Contains(_log.Lines, l => l.Message.StartsWith("Successfully validated attestation document variant=tpm", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Validate_PolicyFromJson_BuildsTpmValidatorThatAccepts()
    {
        var policy = AttestationPolicy.FromJson(new AttestationPolicy
        {
            Variant = AttestationVariant.Tpm,
            Measurements = new Measurements().WithZeroPcr15(),
            TrustedKeys = [tpm.Session.KeyFingerprint],
        }.ToJson());
        var (document, nonce) = await IssueAsync();

        var validator = policy.CreateValidator();
        var verdict = await validator.ValidateAsync(document, nonce, CancellationToken.None);

        Assert.IsType<TpmValidator>(validator);
        Assert.True(verdict.Accepted, verdict.ToString());
    }

    [Fact]
    public async Task Validate_ReplayedQuoteWithOldNonce_RefusedAsNonceMismatch()
    {
        var (recorded, _) = await IssueAsync();

        var verdict = Validator().Validate(recorded, RandomNumberGenerator.GetBytes(32));

        Assert.Equal(AttestationFailure.NonceMismatch, verdict.Failure);
        Assert.Contains(_log.Lines, l => l.Message.Contains("variant=tpm reason=NonceMismatch", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Validate_EnvelopeNonceSwappedForVerifiers_RefusedAsUserDataMismatch()
    {
        // An attacker copies the verifier's fresh nonce into an old document's envelope: the quote still binds the old one.
        var (recorded, _) = await IssueAsync();
        var fresh = RandomNumberGenerator.GetBytes(32);
        Assert.True(AttestationDocument.TryParse(recorded, out var doc, out _));
        var forged = new AttestationDocument(doc.VariantName, doc.UserData, fresh, doc.Payload).Encode();

        var verdict = Validator().Validate(forged, fresh);

        Assert.Equal(AttestationFailure.UserDataMismatch, verdict.Failure);
    }

    [Fact]
    public async Task Validate_WrongUserData_RefusedAsUserDataMismatch()
    {
        var (document, nonce) = await IssueAsync();
        var moved = Rewrap(document, PayloadOf(document), userData: SHA256.HashData("attacker tls key"u8));

        var verdict = Validator().Validate(moved, nonce);

        Assert.Equal(AttestationFailure.UserDataMismatch, verdict.Failure);
    }

    [Fact]
    public async Task Validate_TamperedPcrValue_RefusedAsPcrDigestMismatch()
    {
        var (document, nonce) = await IssueAsync();
        var payload = PayloadOf(document);
        var pcrs = payload.Pcrs.Select(p => (byte[])p.Clone()).ToArray();
        pcrs[4] = SHA256.HashData("the binary the verifier expects"u8);
        var tampered = Rewrap(document, new TpmQuotePayload(payload.AttestationKeyPublic, payload.Attest, payload.Signature, pcrs));

        var verdict = Validator(trustAny: true).Validate(tampered, nonce);

        Assert.Equal(AttestationFailure.PcrDigestMismatch, verdict.Failure);
    }

    [Fact]
    public async Task Validate_TamperedSignature_RefusedAsBadSignature()
    {
        var (document, nonce) = await IssueAsync();
        var payload = PayloadOf(document);
        var signature = (byte[])payload.Signature.Clone();
        signature[^1] ^= 0x01;
        var tampered = Rewrap(document, new TpmQuotePayload(payload.AttestationKeyPublic, payload.Attest, signature, payload.Pcrs));

        var verdict = Validator().Validate(tampered, nonce);

        Assert.Equal(AttestationFailure.BadSignature, verdict.Failure);
    }

    [Fact]
    public async Task Validate_SameKeyAgain_CachedKeyStillChecksEverySignature()
    {
        var validator = Validator();
        var (first, firstNonce) = await IssueAsync();
        var (second, secondNonce) = await IssueAsync();
        var payload = PayloadOf(second);
        var signature = (byte[])payload.Signature.Clone();
        signature[^1] ^= 0x01;
        var tampered = Rewrap(second, new TpmQuotePayload(payload.AttestationKeyPublic, payload.Attest, signature, payload.Pcrs));

        var accepted = validator.Validate(first, firstNonce);
        var refused = validator.Validate(tampered, secondNonce);
        var acceptedAgain = validator.Validate(second, secondNonce);

        Assert.True(accepted.Accepted, accepted.Message);
        Assert.Equal(AttestationFailure.BadSignature, refused.Failure);
        Assert.True(acceptedAgain.Accepted, acceptedAgain.Message);
        Assert.Equal(accepted.Facts!.AttestationKeyFingerprint, acceptedAgain.Facts!.AttestationKeyFingerprint);
    }

    [Fact]
    public async Task Validate_TamperedAttestMagic_RefusedAsMalformed()
    {
        var (document, nonce) = await IssueAsync();
        var payload = PayloadOf(document);
        var attest = (byte[])payload.Attest.Clone();
        attest[0] ^= 0x80;
        var tampered = Rewrap(document, new TpmQuotePayload(payload.AttestationKeyPublic, attest, payload.Signature, payload.Pcrs));

        var verdict = Validator().Validate(tampered, nonce);

        Assert.Equal(AttestationFailure.Malformed, verdict.Failure);
        Assert.Contains("magic", verdict.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Validate_QuoteSignedBySoftwareKeyPosingAsTpm_RefusedAsKeyNotRestricted()
    {
        // An unrestricted key can sign any TPMS_ATTEST-shaped bytes; the validator must insist on restricted + fixedTPM.
        var (document, nonce) = await IssueAsync();
        var payload = PayloadOf(document);
        var akPublic = (byte[])payload.AttestationKeyPublic.Clone();
        var attributes = BinaryPrimitives.ReadUInt32BigEndian(akPublic.AsSpan(4));
        BinaryPrimitives.WriteUInt32BigEndian(akPublic.AsSpan(4), attributes & ~(uint)TpmObjectAttributes.Restricted);
        var forged = Rewrap(document, new TpmQuotePayload(akPublic, payload.Attest, payload.Signature, payload.Pcrs));

        var verdict = Validator(trustAny: true).Validate(forged, nonce);

        Assert.Equal(AttestationFailure.KeyNotRestricted, verdict.Failure);
    }

    [Fact]
    public async Task Validate_KeyNotPinned_RefusedAsUntrustedKey()
    {
        using var other = SimulatedAttestationKey.Create();
        var (document, nonce) = await IssueAsync();

        var verdict = Validator(trustedKey: other.Fingerprint).Validate(document, nonce);

        Assert.Equal(AttestationFailure.UntrustedKey, verdict.Failure);
        Assert.Contains(tpm.Session.KeyFingerprint, verdict.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Validate_TrustAnyKey_AcceptsUnpinnedKey()
    {
        using var other = SimulatedAttestationKey.Create();
        var (document, nonce) = await IssueAsync();

        var verdict = Validator(trustAny: true, trustedKey: other.Fingerprint).Validate(document, nonce);

        Assert.True(verdict.Accepted, verdict.ToString());
    }

    [Fact]
    public async Task Validate_EnforcedMeasurementMismatch_RefusedNamingIndex()
    {
        var measurements = new Measurements().With(4, new Measurement(SHA256.HashData("other binary"u8)));
        var (document, nonce) = await IssueAsync();

        var verdict = Validator(measurements).Validate(document, nonce);

        Assert.Equal(AttestationFailure.MeasurementMismatch, verdict.Failure);
        Assert.Contains("untrusted measurement value", verdict.Message, StringComparison.Ordinal);
        Assert.Contains("at index 4", verdict.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Validate_WarnOnlyMismatch_AcceptedWithWarningLogged()
    {
        var measurements = new Measurements().With(4, Measurement.Zero(warnOnly: true));
        var (document, nonce) = await IssueAsync();

        var verdict = Validator(measurements).Validate(document, nonce);

        Assert.True(verdict.Accepted, verdict.ToString());
        Assert.Contains("at index 4", Assert.Single(verdict.Warnings), StringComparison.Ordinal);
        Assert.Contains(_log.Lines, l => l.Level == LogLevel.Warning && l.Message.Contains("variant=tpm", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Validate_SimulatedDocument_RefusedAsUnknownVariant()
    {
        using var key = SimulatedAttestationKey.Create();
        var nonce = RandomNumberGenerator.GetBytes(32);
        var document = new SimulatedIssuer(key, new SimulatedPcrBank()).Issue(UserData, nonce);

        var verdict = Validator().Validate(document, nonce);

        Assert.Equal(AttestationFailure.UnknownVariant, verdict.Failure);
    }

    [Fact]
    public async Task Validate_Pcr15ExtendedWithClusterId_EqualsConstellationValue()
    {
        // CONSTELLATION-FACTS §9.2: PCR 15 = SHA-256(zero32 ‖ SHA-256(clusterID)) after TPM2_PCR_Event on a fresh PCR.
        var dir = Directory.CreateTempSubdirectory("asterism-tpm-pcr15-").FullName;
        try
        {
            await using var swtpm = await SwtpmProcess.StartAsync(dir, CancellationToken.None);
            await using var session = await TpmAttestationSession.ConnectSwtpmAsync(swtpm.SocketPath, default, null, CancellationToken.None);
            var clusterId = RandomNumberGenerator.GetBytes(32);
            await session.Pcrs.MeasureEventAsync(Measurements.ClusterIdIndex, clusterId, CancellationToken.None);
            var nonce = RandomNumberGenerator.GetBytes(32);
            var document = await session.Issuer.IssueAsync(UserData, nonce, CancellationToken.None);

            var verdict = Validator(new Measurements().WithZeroPcr15(), trustAny: true).Validate(document, nonce);

            Assert.Equal(AttestationFailure.MeasurementMismatch, verdict.Failure);
            Assert.Contains("at index 15", verdict.Message, StringComparison.Ordinal);
            Assert.Equal(SHA256.HashData([.. new byte[32], .. SHA256.HashData(clusterId)]), await session.Pcrs.ReadAsync(15, CancellationToken.None));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
