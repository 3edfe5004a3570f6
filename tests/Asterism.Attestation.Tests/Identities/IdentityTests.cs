using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Asterism.Attestation.Identities;
using Asterism.Attestation.Simulated;
using Microsoft.Extensions.Time.Testing;

namespace Asterism.Attestation.Tests.Identities;

public sealed class IdentityTests : IDisposable
{
    private static readonly DateTimeOffset Now = new(2026, 11, 29, 12, 0, 0, TimeSpan.Zero);

    private readonly ECDsa _caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly X509Certificate2 _ca;
    private readonly IdentityAuthority _authority;
    private readonly SimulatedAttestationKey _nodeKey = SimulatedAttestationKey.Create();
    private readonly SimulatedPcrBank _bank = new();
    private readonly byte[] _nonce = RandomNumberGenerator.GetBytes(32);

    public IdentityTests()
    {
        _ca = IdentityCertificate.CreateAuthority(_caKey, "test CA", Now.AddDays(-1), Now.AddYears(1));
        _authority = new IdentityAuthority(_ca.RawData);
    }

    public void Dispose()
    {
        _authority.Dispose();
        _ca.Dispose();
        _caKey.Dispose();
        _nodeKey.Dispose();
    }

    private byte[] Issue(string name = "c1-control-plane-0", string role = NodeIdentity.ControlPlaneRole, byte[]? spki = null, ECDsa? caKey = null, X509Certificate2? ca = null) =>
        IdentityCertificate.Issue(caKey ?? _caKey, ca ?? _ca, name, role, spki ?? _nodeKey.PublicKeySpki, Now.AddHours(-1), Now.AddDays(30));

    [Fact]
    public void Verify_CertificateOfThisAuthority_YieldsIdentity()
    {
        var der = Issue();
        var check = _authority.Verify(der, _nodeKey.PublicKeySpki, Now);
        Assert.True(check.Accepted, check.Error);
        Assert.Equal("c1-control-plane-0", check.Identity!.Name);
        Assert.Equal(NodeIdentity.ControlPlaneRole, check.Identity.Role);
        Assert.True(check.Identity.IsControlPlane);
        Assert.Equal(IdentityCertificate.FingerprintOf(der), check.Identity.CertificateFingerprint);
        Assert.Equal(_authority.Fingerprint, check.Identity.AuthorityFingerprint);
        // A second check of the same certificate (cached) gives the same answer.
        Assert.Equal(check.Identity, _authority.Verify(der, _nodeKey.PublicKeySpki, Now).Identity);
    }

    [Fact]
    public void Verify_CertificateOfAnotherAuthority_IsRefused()
    {
        using var otherKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        // Same subject name as the real CA: only the signature tells them apart.
        using var other = IdentityCertificate.CreateAuthority(otherKey, "test CA", Now.AddDays(-1), Now.AddYears(1));
        var check = _authority.Verify(Issue(caKey: otherKey, ca: other), _nodeKey.PublicKeySpki, Now);
        Assert.False(check.Accepted);
        Assert.Contains("not signed by the trusted authority", check.Error);
    }

    [Fact]
    public void Verify_CertificateOfAnotherKey_IsRefused()
    {
        using var other = SimulatedAttestationKey.Create();
        var check = _authority.Verify(Issue(spki: other.PublicKeySpki), _nodeKey.PublicKeySpki, Now);
        Assert.False(check.Accepted);
        Assert.Contains("certifies another key", check.Error);
    }

    [Fact]
    public void Verify_OutsideValidity_IsRefused()
    {
        var der = Issue();
        Assert.Contains("not valid now", _authority.Verify(der, _nodeKey.PublicKeySpki, Now.AddDays(31)).Error);
        Assert.Contains("not valid now", _authority.Verify(der, _nodeKey.PublicKeySpki, Now.AddHours(-2)).Error);
    }

    [Fact]
    public void Verify_SelfSignedOrCaCertificate_IsRefused()
    {
        // The attacker's own "identity": a self-signed certificate naming a real instance.
        var subject = new X500DistinguishedNameBuilder();
        subject.AddOrganizationName(IdentityCertificate.Organization);
        subject.AddOrganizationalUnitName(NodeIdentity.ControlPlaneRole);
        subject.AddCommonName("c1-control-plane-0");
        using var attackerKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var selfSigned = new CertificateRequest(subject.Build(), attackerKey, HashAlgorithmName.SHA256).CreateSelfSigned(Now.AddHours(-1), Now.AddDays(1));
        Assert.False(_authority.Verify(selfSigned.RawData, attackerKey.ExportSubjectPublicKeyInfo(), Now).Accepted);
        // The CA's own certificate is no node identity.
        Assert.False(_authority.Verify(_ca.RawData, _caKey.ExportSubjectPublicKeyInfo(), Now).Accepted);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(100)]
    public void Verify_Garbage_IsRefusedWithReason(int length)
    {
        var check = _authority.Verify(RandomNumberGenerator.GetBytes(length), _nodeKey.PublicKeySpki, Now);
        Assert.False(check.Accepted);
        Assert.NotEmpty(check.Error);
    }

    [Fact]
    public void Verify_TruncatedOrExtendedCertificate_IsRefused()
    {
        var der = Issue();
        Assert.False(_authority.Verify(der[..^1], _nodeKey.PublicKeySpki, Now).Accepted);
        Assert.False(_authority.Verify([.. der, 0], _nodeKey.PublicKeySpki, Now).Accepted);
        var flipped = der.ToArray();
        flipped[^80] ^= 1;
        Assert.False(_authority.Verify(flipped, _nodeKey.PublicKeySpki, Now).Accepted);
        Assert.False(_authority.Verify(new byte[IdentityCertificate.MaxSize + 1], _nodeKey.PublicKeySpki, Now).Accepted);
    }

    [Theory]
    [InlineData("UPPER")]
    [InlineData("")]
    [InlineData("a b")]
    public void Issue_InvalidName_Throws(string name) =>
        Assert.Throws<ArgumentException>(() => Issue(name: name));

    [Fact]
    public void Issue_InvalidRole_Throws() => Assert.Throws<ArgumentException>(() => Issue(role: "admin"));

    [Fact]
    public void DiskUuidFor_IsAStableVersion8UuidPerAuthorityAndName()
    {
        var uuid = NodeIdentity.DiskUuidFor(_authority.Fingerprint, "c1-worker-0");
        Assert.Equal(uuid, NodeIdentity.DiskUuidFor(_authority.Fingerprint, "c1-worker-0"));
        Assert.Matches("^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", uuid);
        Assert.NotEqual(uuid, NodeIdentity.DiskUuidFor(_authority.Fingerprint, "c1-worker-1"));
        Assert.NotEqual(uuid, NodeIdentity.DiskUuidFor(new string('0', 64), "c1-worker-0"));
    }

    private SimulatedValidator Validator(bool pinNodeKey = false, FakeTimeProvider? time = null)
    {
        var options = new SimulatedValidatorOptions
        {
            Measurements = Measurements.Empty.WithZeroPcr15(),
            IdentityAuthority = _authority,
            Time = time ?? new FakeTimeProvider(Now),
        };
        if (pinNodeKey)
        {
            options.TrustedKeyFingerprints.Add(_nodeKey.Fingerprint);
        }
        return new SimulatedValidator(options);
    }

    [Fact]
    public void SimulatedValidator_CertifiedKey_IsAcceptedWithIdentity()
    {
        var doc = new SimulatedIssuer(_nodeKey, _bank, Issue(name: "c1-worker-3", role: NodeIdentity.WorkerRole)).Issue("u"u8, _nonce);
        var verdict = Validator().Validate(doc, _nonce);
        Assert.True(verdict.Accepted, verdict.Message);
        Assert.Equal("c1-worker-3", verdict.Facts!.Identity!.Name);
        Assert.False(verdict.Facts.Identity.IsControlPlane);
    }

    [Fact]
    public void SimulatedValidator_KeyWithoutCertificate_IsUntrusted()
    {
        var doc = new SimulatedIssuer(_nodeKey, _bank).Issue("u"u8, _nonce);
        var verdict = Validator().Validate(doc, _nonce);
        Assert.Equal(AttestationFailure.UntrustedKey, verdict.Failure);
        Assert.Contains("no identity certificate", verdict.Message);
    }

    [Fact]
    public void SimulatedValidator_StolenCertificateOfAnotherNode_IsUntrusted()
    {
        // An attacker with its own key presents a real node's (public) identity certificate.
        using var attacker = SimulatedAttestationKey.Create();
        var doc = new SimulatedIssuer(attacker, _bank, Issue()).Issue("u"u8, _nonce);
        var verdict = Validator().Validate(doc, _nonce);
        Assert.Equal(AttestationFailure.UntrustedKey, verdict.Failure);
        Assert.Contains("certifies another key", verdict.Message);
    }

    [Fact]
    public void SimulatedValidator_PinnedKeyWithoutCertificate_IsAcceptedWithoutIdentity()
    {
        var doc = new SimulatedIssuer(_nodeKey, _bank).Issue("u"u8, _nonce);
        var verdict = Validator(pinNodeKey: true).Validate(doc, _nonce);
        Assert.True(verdict.Accepted, verdict.Message);
        Assert.Null(verdict.Facts!.Identity);
    }

    [Fact]
    public async Task ExpectedPeerValidator_OtherNameOrRole_IsIdentityMismatch()
    {
        var doc = new SimulatedIssuer(_nodeKey, _bank, Issue(name: "c1-worker-0", role: NodeIdentity.WorkerRole)).Issue("u"u8, _nonce);
        var byName = new ExpectedPeerValidator(Validator(), ExpectedPeerValidator.Identity("c1-control-plane-1", null));
        var byRole = new ExpectedPeerValidator(Validator(), ExpectedPeerValidator.Identity(null, NodeIdentity.ControlPlaneRole));
        var right = new ExpectedPeerValidator(Validator(), ExpectedPeerValidator.Identity("c1-worker-0", NodeIdentity.WorkerRole));
        Assert.Equal(AttestationFailure.IdentityMismatch, (await byName.ValidateAsync(doc, _nonce, default)).Failure);
        Assert.Equal(AttestationFailure.IdentityMismatch, (await byRole.ValidateAsync(doc, _nonce, default)).Failure);
        Assert.True((await right.ValidateAsync(doc, _nonce, default)).Accepted);
    }

    [Fact]
    public void Policy_RoundTripsProviderCaAndRefusesTrustAnyForTpm()
    {
        var policy = new AttestationPolicy
        {
            Variant = AttestationVariant.Simulated,
            Measurements = Measurements.Empty,
            ProviderCa = PemEncoding.WriteString("CERTIFICATE", _ca.RawData),
        };
        var parsed = AttestationPolicy.FromJson(policy.ToJson());
        Assert.Equal(policy.ProviderCa, parsed.ProviderCa);
        parsed.EnsureUsable();
        var tpm = new AttestationPolicy { Variant = AttestationVariant.Tpm, Measurements = Measurements.Empty, TrustAnyKey = true, ProviderCa = policy.ProviderCa };
        Assert.Throws<MeasurementsFormatException>(tpm.EnsureUsable);
        var broken = new AttestationPolicy { Variant = AttestationVariant.Simulated, Measurements = Measurements.Empty, ProviderCa = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----" };
        Assert.Throws<MeasurementsFormatException>(broken.EnsureUsable);
    }
}
