using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Attestation.Identities;

/// <summary>
/// A validator that, after the inner validator accepted a document, also requires what this connection expects of
/// the peer: a certified identity with a given name or role (recover dials a named instance; init expects
/// control-plane-0; a node expects a serving control plane), or a PCR state. A document that passes the inner checks
/// but not the expectation is refused as <see cref="AttestationFailure.IdentityMismatch"/> and logged.
/// </summary>
public sealed class ExpectedPeerValidator(IAttestationValidator inner, Func<AttestationFacts, string?> expectation, ILogger? logger = null) : IAttestationValidator
{
    private readonly IAttestationValidator _inner = inner ?? throw new ArgumentNullException(nameof(inner));
    private readonly Func<AttestationFacts, string?> _expectation = expectation ?? throw new ArgumentNullException(nameof(expectation));
    private readonly ILogger _logger = logger ?? NullLogger.Instance;

    public AttestationVariant Variant => _inner.Variant;

    public async ValueTask<AttestationVerdict> ValidateAsync(ReadOnlyMemory<byte> document, ReadOnlyMemory<byte> nonce, CancellationToken cancellationToken)
    {
        var verdict = await _inner.ValidateAsync(document, nonce, cancellationToken).ConfigureAwait(false);
        if (!verdict.Accepted)
        {
            return verdict;
        }
        var problem = _expectation(verdict.Facts!);
        if (problem is null)
        {
            return verdict;
        }
        var refused = AttestationVerdict.Refuse(AttestationFailure.IdentityMismatch, problem);
        AttestationLog.Report(_logger, Variant.Name, verdict.Facts!.AttestationKeyFingerprint, refused);
        return refused;
    }

    /// <summary>Requires a certified identity named <paramref name="name"/> (any name when null) in <paramref name="role"/> (any role when null).</summary>
    public static Func<AttestationFacts, string?> Identity(string? name, string? role) => facts =>
    {
        if (facts.Identity is not { } identity)
        {
            return "the peer has no certified identity";
        }
        if (name is not null && identity.Name != name)
        {
            return $"the peer is certified as {identity.Name}, expected {name}";
        }
        if (role is not null && identity.Role != role)
        {
            return $"the peer {identity.Name} is certified as {identity.Role}, expected {role}";
        }
        return null;
    };
}
