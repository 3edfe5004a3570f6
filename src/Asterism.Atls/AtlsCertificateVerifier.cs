using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Asterism.Attestation;

namespace Asterism.Atls;

/// <summary>
/// Checks a peer's aTLS certificate: finds the attestation extension for a configured variant, validates the
/// document against the verifier's nonce within a timeout, and requires its userData to equal SHA-256 of the
/// certificate's SubjectPublicKeyInfo (the TLS handshake already proved the peer holds that key).
/// </summary>
public sealed class AtlsCertificateVerifier
{
    private readonly AttestationValidatorSet _validators;
    private readonly TimeSpan _timeout;
    private readonly TimeProvider _time;

    public AtlsCertificateVerifier(AttestationValidatorSet validators, TimeSpan timeout, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(validators);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        _validators = validators;
        _timeout = timeout;
        _time = timeProvider ?? TimeProvider.System;
    }

    /// <summary>The verdict and a label for logs: the variant name, or the extension OID / "none" when no validator ran.</summary>
    public async ValueTask<(AttestationVerdict Verdict, string Variant)> VerifyAsync(X509Certificate2? certificate, ReadOnlyMemory<byte> nonce, CancellationToken cancellationToken)
    {
        if (certificate is null)
        {
            return (AttestationVerdict.Refuse(AttestationFailure.MissingExtension, "peer presented no certificate"), "none");
        }
        X509Extension? match = null;
        string? foreignArcOid = null;
        var seen = new List<string>();
        foreach (var extension in certificate.Extensions)
        {
            var oid = extension.Oid?.Value;
            if (oid is null)
            {
                continue;
            }
            seen.Add(oid);
            if (_validators.TryGetByOid(oid, out _))
            {
                match ??= extension;
            }
            else if (oid.StartsWith(AttestationVariant.OidArc + ".", StringComparison.Ordinal))
            {
                foreignArcOid ??= oid;
            }
        }
        if (match is null)
        {
            return foreignArcOid is not null
                ? (AttestationVerdict.Refuse(AttestationFailure.UnknownVariant, $"certificate carries attestation variant OID {foreignArcOid}, which is not accepted here"),
                   AttestationVariant.FromOid(foreignArcOid)?.Name ?? foreignArcOid)
                : (AttestationVerdict.Refuse(AttestationFailure.MissingExtension, $"certificate carries no compatible attestation document; extension OIDs: [{string.Join(", ", seen)}]"), "none");
        }
        var oidValue = match.Oid!.Value!;
        var variant = AttestationVariant.FromOid(oidValue)?.Name ?? oidValue;
        var verdict = await ValidateWithTimeoutAsync(oidValue, match.RawData, nonce, cancellationToken).ConfigureAwait(false);
        if (!verdict.Accepted)
        {
            return (verdict, variant);
        }
        var expected = AtlsCertificate.UserDataFor(certificate);
        if (verdict.UserData is null || !CryptographicOperations.FixedTimeEquals(expected, verdict.UserData))
        {
            return (AttestationVerdict.Refuse(AttestationFailure.UserDataMismatch, "the attested user data does not match the certificate's key (document moved to another TLS key)"), variant);
        }
        return (verdict, verdict.Facts?.Variant.Name ?? variant);
    }

    private async ValueTask<AttestationVerdict> ValidateWithTimeoutAsync(string oid, byte[] document, ReadOnlyMemory<byte> nonce, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            var task = _validators.ValidateAsync(oid, document, nonce, linked.Token);
            return task.IsCompletedSuccessfully ? task.Result : await task.AsTask().WaitAsync(linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return AttestationVerdict.Refuse(AttestationFailure.Timeout, $"attestation validation did not finish within {_timeout.TotalSeconds:0.###} s");
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return AttestationVerdict.Refuse(AttestationFailure.ValidatorError, $"attestation validator failed: {e.GetType().Name}");
        }
    }
}
