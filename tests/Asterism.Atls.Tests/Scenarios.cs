using System.Security.Cryptography;
using Asterism.Attestation;
using Asterism.Attestation.Simulated;
using Microsoft.Extensions.Logging;

namespace Asterism.Atls.Tests;

/// <summary>An issuer whose documents a test controls.</summary>
public sealed class FuncIssuer(AttestationVariant variant, Func<byte[], byte[], byte[]> issue) : IAttestationIssuer
{
    public AttestationVariant Variant => variant;

    public ValueTask<byte[]> IssueAsync(ReadOnlyMemory<byte> userData, ReadOnlyMemory<byte> nonce, CancellationToken cancellationToken) =>
        ValueTask.FromResult(issue(userData.ToArray(), nonce.ToArray()));
}

/// <summary>A validator that never answers (for timeouts).</summary>
public sealed class HangingValidator : IAttestationValidator
{
    public AttestationVariant Variant => AttestationVariant.Simulated;

    public async ValueTask<AttestationVerdict> ValidateAsync(ReadOnlyMemory<byte> document, ReadOnlyMemory<byte> nonce, CancellationToken cancellationToken)
    {
        await Task.Delay(Timeout.Infinite, cancellationToken);
        throw new InvalidOperationException("unreachable");
    }
}

/// <summary>A node (software key + PCR bank) and the attacks on its attestation that both aTLS directions must refuse.</summary>
public sealed class Node : IDisposable
{
    public SimulatedAttestationKey Key { get; } = SimulatedAttestationKey.Create();
    public SimulatedPcrBank Pcrs { get; } = new();

    public Node() => Pcrs.MeasureEvent(4, "asterism-node binary"u8);

    public SimulatedIssuer Issuer() => new(Key, Pcrs);

    /// <summary>Trusts this node's key, enforces PCR 15 = 0 and PCR 4 as measured.</summary>
    public SimulatedValidator Validator(CollectingLoggerProvider logs, Measurements? measurements = null)
    {
        var options = new SimulatedValidatorOptions
        {
            Measurements = measurements ?? new Measurements().With(4, new Measurement(Pcrs.Read(4))).WithZeroPcr15(),
        };
        options.TrustedKeyFingerprints.Add(Key.Fingerprint);
        return new SimulatedValidator(options, logs.Factory().CreateLogger<SimulatedValidator>());
    }

    public static TheoryData<string, AttestationFailure> Refusals => new()
    {
        { "replayed", AttestationFailure.NonceMismatch },
        { "otherKey", AttestationFailure.UserDataMismatch },
        { "pcrMismatch", AttestationFailure.MeasurementMismatch },
        { "untrustedKey", AttestationFailure.UntrustedKey },
        { "badSignature", AttestationFailure.BadSignature },
        { "unknownOid", AttestationFailure.UnknownVariant },
        { "unacceptedVariant", AttestationFailure.UnknownVariant },
        { "missingExtension", AttestationFailure.MissingExtension },
        { "garbage", AttestationFailure.Malformed },
        { "truncated", AttestationFailure.Malformed },
        { "oversized", AttestationFailure.Oversized },
        { "futureVersion", AttestationFailure.UnsupportedVersion },
    };

    /// <summary>An issuer playing the attack named <paramref name="scenario"/>.</summary>
    public IAttestationIssuer Attack(string scenario)
    {
        var real = Issuer();
        var simulated = AttestationVariant.Simulated;
        switch (scenario)
        {
            case "replayed":
                // A genuine document recorded from an earlier connection (its nonce and key), played back.
                var recorded = real.Issue(SHA256.HashData("old key"u8), RandomNumberGenerator.GetBytes(32));
                return new FuncIssuer(simulated, (_, _) => recorded);
            case "otherKey":
                // A man in the middle re-terminating TLS: a valid document for this nonce, bound to the genuine node's key.
                using (var genuine = ECDsa.Create(ECCurve.NamedCurves.nistP256))
                {
                    var genuineUserData = AtlsCertificate.UserDataFor(genuine.ExportSubjectPublicKeyInfo());
                    return new FuncIssuer(simulated, (_, nonce) => real.Issue(genuineUserData, nonce));
                }
            case "pcrMismatch":
                var initialized = new SimulatedPcrBank();
                initialized.MeasureEvent(4, "asterism-node binary"u8);
                initialized.MeasureEvent(15, "cluster id"u8);
                return new SimulatedIssuer(Key, initialized);
            case "untrustedKey":
                return new SimulatedIssuer(SimulatedAttestationKey.Create(), Pcrs);
            case "badSignature":
                return new FuncIssuer(simulated, (userData, nonce) =>
                {
                    var doc = real.Issue(userData, nonce);
                    doc[^1] ^= 0x01;
                    return doc;
                });
            case "unknownOid":
                return new FuncIssuer(new AttestationVariant("bogus", AttestationVariant.OidArc + ".99"), (u, n) => real.Issue(u, n));
            case "unacceptedVariant":
                return new FuncIssuer(AttestationVariant.Tpm, (u, n) => real.Issue(u, n));
            case "missingExtension":
                return new FuncIssuer(new AttestationVariant("foreign", "1.3.6.1.4.1.55555.1"), (u, n) => real.Issue(u, n));
            case "garbage":
                return new FuncIssuer(simulated, (_, _) => RandomNumberGenerator.GetBytes(500));
            case "truncated":
                return new FuncIssuer(simulated, (userData, nonce) => real.Issue(userData, nonce)[..^20]);
            case "oversized":
                return new FuncIssuer(simulated, (_, _) => new byte[AttestationDocument.MaxSize + 4000]);
            case "futureVersion":
                return new FuncIssuer(simulated, (userData, nonce) =>
                {
                    var doc = real.Issue(userData, nonce);
                    doc[4] = 9;
                    return doc;
                });
            default:
                throw new ArgumentException(scenario, nameof(scenario));
        }
    }

    public void Dispose() => Key.Dispose();
}
