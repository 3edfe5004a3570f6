using System.Security.Cryptography;
using Asterism.Attestation.Simulated;

namespace Asterism.Attestation.Tests;

public sealed class SimulatedTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("asterism-att-").FullName;
    private readonly SimulatedAttestationKey _key = SimulatedAttestationKey.Create();
    private readonly SimulatedPcrBank _bank = new();
    private readonly byte[] _userData = SHA256.HashData("user"u8);
    private readonly byte[] _nonce = RandomNumberGenerator.GetBytes(32);

    public void Dispose()
    {
        _key.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private SimulatedIssuer Issuer() => new(_key, _bank);

    private (SimulatedValidator Validator, CollectingLogger<SimulatedValidator> Log) Validator(Measurements? m = null, bool trustAny = false, string? trusted = null)
    {
        var options = new SimulatedValidatorOptions { Measurements = m ?? Measurements.Empty.WithZeroPcr15(), TrustAnyKey = trustAny };
        options.TrustedKeyFingerprints.Add(trusted ?? _key.Fingerprint);
        var log = new CollectingLogger<SimulatedValidator>();
        return (new SimulatedValidator(options, log), log);
    }

    [Fact]
    public void Extend_FollowsTpmSemantics()
    {
        var digest = SHA256.HashData("boot"u8);
        _bank.Extend(4, digest);
        Assert.Equal(SHA256.HashData([.. new byte[32], .. digest]), _bank.Read(4));
        _bank.MeasureEvent(4, "event"u8);
        Assert.Equal(SHA256.HashData([.. SHA256.HashData([.. new byte[32], .. digest]), .. SHA256.HashData("event"u8)]), _bank.Read(4));
        Assert.Equal(new byte[32], _bank.Read(5));
        Assert.Equal(new byte[32], new SimulatedPcrBank().Read(4));
    }

    [Fact]
    public void Extend_BadIndexOrLength_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => _bank.Extend(24, new byte[32]));
        Assert.Throws<ArgumentException>(() => _bank.Extend(0, new byte[20]));
    }

    [Fact]
    public void LoadOrCreate_NewDirectory_CreatesMode0600AndReloadsSameKey()
    {
        using var created = SimulatedAttestationKey.LoadOrCreate(_dir);
        var path = Path.Combine(_dir, SimulatedAttestationKey.FileName);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        Assert.StartsWith("-----BEGIN PRIVATE KEY-----", File.ReadAllText(path));
        using var loaded = SimulatedAttestationKey.LoadOrCreate(_dir);
        Assert.Equal(created.Fingerprint, loaded.Fingerprint);
        Assert.Equal("[redacted]", loaded.ToString());
    }

    [Fact]
    public void Load_WorldReadableFile_Throws()
    {
        using (SimulatedAttestationKey.LoadOrCreate(_dir))
        {
        }
        var path = Path.Combine(_dir, SimulatedAttestationKey.FileName);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        Assert.Throws<InvalidDataException>(() => SimulatedAttestationKey.Load(path));
    }

    [Fact]
    public async Task Validate_FreshDocument_AcceptedWithFacts()
    {
        _bank.MeasureEvent(4, "kernel"u8);
        var doc = await Issuer().IssueAsync(_userData, _nonce, default);
        var (validator, log) = Validator();
        var verdict = await validator.ValidateAsync(doc, _nonce, default);
        Assert.True(verdict.Accepted, verdict.ToString());
        Assert.Equal(_userData, verdict.UserData);
        Assert.Equal(AttestationVariant.Simulated, verdict.Facts!.Variant);
        Assert.Equal(_key.Fingerprint, verdict.Facts.AttestationKeyFingerprint);
        Assert.Equal(_bank.Read(4), verdict.Facts.Pcrs[4]);
        Assert.Equal(24, verdict.Facts.Pcrs.Count);
        var line = Assert.Single(log.Lines);
        Assert.Contains("simulated", line.Message);
        Assert.Contains(_key.Fingerprint, line.Message);
    }

    [Fact]
    public void Validate_OtherNonce_RefusedAsNonceMismatch()
    {
        var doc = Issuer().Issue(_userData, _nonce);
        var (validator, log) = Validator();
        var verdict = validator.Validate(doc, RandomNumberGenerator.GetBytes(32));
        Assert.Equal(AttestationFailure.NonceMismatch, verdict.Failure);
        Assert.Contains("NonceMismatch", Assert.Single(log.Lines).Message);
        Assert.Contains("simulated", log.Lines.Single().Message);
    }

    [Fact]
    public void Validate_UntrustedKey_Refused()
    {
        using var other = SimulatedAttestationKey.Create();
        var (validator, _) = Validator(trusted: other.Fingerprint);
        Assert.Equal(AttestationFailure.UntrustedKey, validator.Validate(Issuer().Issue(_userData, _nonce), _nonce).Failure);
    }

    [Fact]
    public void Validate_KeyTrustedByPem_Accepted()
    {
        var options = new SimulatedValidatorOptions();
        options.TrustedKeysPem.Add(PemEncoding.WriteString("PUBLIC KEY", _key.PublicKeySpki));
        Assert.True(new SimulatedValidator(options).Validate(Issuer().Issue(_userData, _nonce), _nonce).Accepted);
    }

    [Fact]
    public void Validate_TrustAnyKey_AcceptsUnknownKey()
    {
        using var other = SimulatedAttestationKey.Create();
        var (validator, _) = Validator(trustAny: true, trusted: other.Fingerprint);
        Assert.True(validator.Validate(Issuer().Issue(_userData, _nonce), _nonce).Accepted);
    }

    [Fact]
    public void Constructor_NoTrustConfigured_Throws() =>
        Assert.Throws<ArgumentException>(() => new SimulatedValidator(new SimulatedValidatorOptions()));

    [Fact]
    public void Validate_TamperedPcrOrUserData_RefusedAsBadSignature()
    {
        var doc = Issuer().Issue(_userData, _nonce);
        Assert.True(AttestationDocument.TryParse(doc, out var parsed, out _));
        Assert.True(SimulatedQuote.TryParse(parsed.Payload, out var quote, out _));
        quote.Pcrs[4][0] ^= 1;
        var tamperedPcr = new AttestationDocument("simulated", parsed.UserData, parsed.Nonce, quote.Encode()).Encode();
        var tamperedUser = new AttestationDocument("simulated", new byte[32], parsed.Nonce, parsed.Payload).Encode();
        var (validator, _) = Validator();
        Assert.Equal(AttestationFailure.BadSignature, validator.Validate(tamperedPcr, _nonce).Failure);
        Assert.Equal(AttestationFailure.BadSignature, validator.Validate(tamperedUser, _nonce).Failure);
    }

    [Fact]
    public void Validate_EnforcedMismatch_RefusedWithIndexAndValue()
    {
        _bank.MeasureEvent(15, "cluster id"u8);
        var (validator, log) = Validator();
        var verdict = validator.Validate(Issuer().Issue(_userData, _nonce), _nonce);
        Assert.Equal(AttestationFailure.MeasurementMismatch, verdict.Failure);
        Assert.Contains($"untrusted measurement value {Convert.ToHexStringLower(_bank.Read(15))} at index 15", verdict.Message);
        Assert.Contains("MeasurementMismatch", log.Lines.Single().Message);
    }

    [Fact]
    public void Validate_WarnOnlyMismatch_AcceptedWithLoggedWarning()
    {
        _bank.MeasureEvent(1, "firmware"u8);
        var m = new Measurements().With(1, Measurement.Zero(warnOnly: true));
        var (validator, log) = Validator(m);
        var verdict = validator.Validate(Issuer().Issue(_userData, _nonce), _nonce);
        Assert.True(verdict.Accepted);
        Assert.Contains("at index 1", Assert.Single(verdict.Warnings));
        Assert.All(log.Lines, l => Assert.Contains("simulated", l.Message));
        Assert.Contains(log.Lines, l => l.Message.Contains("warning=untrusted measurement value", StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_OtherVariantInEnvelope_RefusedAsUnknownVariant()
    {
        Assert.True(AttestationDocument.TryParse(Issuer().Issue(_userData, _nonce), out var parsed, out _));
        var doc = new AttestationDocument("tpm", parsed.UserData, parsed.Nonce, parsed.Payload).Encode();
        Assert.Equal(AttestationFailure.UnknownVariant, Validator().Validator.Validate(doc, _nonce).Failure);
    }

    [Fact]
    public void Validate_GarbageTruncatedOversized_RefusedWithDistinctReasons()
    {
        var (validator, log) = Validator();
        var doc = Issuer().Issue(_userData, _nonce);
        Assert.Equal(AttestationFailure.Malformed, validator.Validate(RandomNumberGenerator.GetBytes(300), _nonce).Failure);
        Assert.Equal(AttestationFailure.Malformed, validator.Validate(doc.AsSpan(0, doc.Length - 10), _nonce).Failure);
        Assert.Equal(AttestationFailure.Oversized, validator.Validate(new byte[70_000], _nonce).Failure);
        Assert.Equal(3, log.Lines.Count);
        Assert.All(log.Lines, l => Assert.Contains("simulated", l.Message));
    }

    [Fact]
    public void Validate_EveryTruncationAndBitFlip_RefusedNeverThrows()
    {
        var (validator, _) = Validator();
        var doc = Issuer().Issue(_userData, _nonce);
        for (var i = 0; i < doc.Length; i += 7)
        {
            Assert.False(validator.Validate(doc.AsSpan(0, i), _nonce).Accepted);
            var flipped = (byte[])doc.Clone();
            flipped[i] ^= 0x10;
            Assert.False(validator.Validate(flipped, _nonce).Accepted);
        }
    }

    [Fact]
    public void Validate_NonP256AttestationKey_RefusedAsMalformed()
    {
        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        var quote = new SimulatedQuote(p384.ExportSubjectPublicKeyInfo(), _bank.ReadAll(), new byte[SimulatedQuote.SignatureLength]);
        var doc = new AttestationDocument("simulated", _userData, _nonce, quote.Encode()).Encode();
        var (validator, _) = Validator(trustAny: true);
        Assert.Equal(AttestationFailure.Malformed, validator.Validate(doc, _nonce).Failure);
    }

    [Fact]
    public void Validate_ManyKeysThroughOneValidator_EachCheckedAgainstItsOwnKey()
    {
        var (validator, _) = Validator(trustAny: true);
        for (var i = 0; i < 5; i++)
        {
            using var key = SimulatedAttestationKey.Create();
            var doc = new SimulatedIssuer(key, _bank).Issue(_userData, _nonce);
            var verdict = validator.Validate(doc, _nonce);
            Assert.True(verdict.Accepted);
            Assert.Equal(key.Fingerprint, verdict.Facts!.AttestationKeyFingerprint);
            // The same document re-signed claims another key: the cached key of the first must not verify it.
            Assert.True(AttestationDocument.TryParse(doc, out var parsed, out _));
            Assert.True(SimulatedQuote.TryParse(parsed.Payload, out var quote, out _));
            var forged = new SimulatedQuote(_key.PublicKeySpki, quote.Pcrs, quote.Signature);
            var forgedDoc = new AttestationDocument("simulated", parsed.UserData, parsed.Nonce, forged.Encode()).Encode();
            Assert.Equal(AttestationFailure.BadSignature, validator.Validate(forgedDoc, _nonce).Failure);
        }
    }

    [Fact]
    public async Task ValidatorSet_ByOid_DispatchesAndRefusesUnknownOid()
    {
        var set = new AttestationValidatorSet(Validator().Validator);
        var doc = Issuer().Issue(_userData, _nonce);
        Assert.True((await set.ValidateAsync(AttestationVariant.Simulated.Oid, doc, _nonce, default)).Accepted);
        Assert.Equal(AttestationFailure.UnknownVariant, (await set.ValidateAsync(AttestationVariant.Tpm.Oid, doc, _nonce, default)).Failure);
        Assert.Equal(AttestationFailure.UnknownVariant, (await set.ValidateAsync("1.2.3.4", doc, _nonce, default)).Failure);
        Assert.True(set.TryGetByName("simulated", out _));
    }
}
