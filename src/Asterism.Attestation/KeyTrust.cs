using Asterism.Attestation.Identities;

namespace Asterism.Attestation;

/// <summary>
/// Which attestation keys a validator trusts: keys certified by the identity authority (the provider CA; the usual
/// case), keys pinned by fingerprint, or — for simulated test clusters only — any key. A key is never trusted because
/// it signed; only because it is certified or pinned.
/// </summary>
internal sealed class KeyTrust
{
    private readonly HashSet<string> _pinned;
    private readonly IdentityAuthority? _authority;
    private readonly bool _trustAny;
    private readonly TimeProvider _time;

    public KeyTrust(IEnumerable<string> pinnedFingerprints, IdentityAuthority? authority, bool trustAny, TimeProvider? time, string paramName)
    {
        _pinned = TrustedKeys.Parse(pinnedFingerprints, paramName);
        _authority = authority;
        _trustAny = trustAny;
        _time = time ?? TimeProvider.System;
        if (!trustAny && _pinned.Count == 0 && authority is null)
        {
            throw new ArgumentException("configure an identity authority (provider CA), trusted attestation keys, or TrustAnyKey", paramName);
        }
    }

    /// <summary>
    /// Decides whether the key <paramref name="keySpki"/> (fingerprint <paramref name="fingerprint"/>) that signed
    /// <paramref name="document"/> is trusted; <paramref name="identity"/> is set when its certificate verified.
    /// </summary>
    public bool IsTrusted(AttestationDocument document, ReadOnlySpan<byte> keySpki, string fingerprint, out NodeIdentity? identity, out string error)
    {
        identity = null;
        error = "";
        string? certificateError = null;
        if (_authority is not null && document.Identity.Length > 0)
        {
            var check = _authority.Verify(document.Identity, keySpki, _time.GetUtcNow());
            if (check.Accepted)
            {
                identity = check.Identity;
                return true;
            }
            certificateError = check.Error;
        }
        if (_pinned.Contains(fingerprint) || _trustAny)
        {
            return true;
        }
        error = certificateError is not null
            ? $"attestation key {fingerprint} is not certified: {certificateError}"
            : _authority is not null
                ? $"attestation key {fingerprint} carries no identity certificate and is not pinned"
                : $"attestation key {fingerprint} is not trusted";
        return false;
    }
}
