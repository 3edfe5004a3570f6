using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Attestation;

/// <summary>
/// The frame every built-in validator shares: its checks run synchronously, the envelope is parsed (size limits,
/// version) and must name this validator's variant before the variant looks at its payload, and every verdict is
/// logged through <see cref="AttestationLog"/> with the variant, the reason and the attestation key fingerprint.
/// </summary>
public abstract class SynchronousAttestationValidator : IAttestationValidator
{
    /// <summary>The fingerprint logged when the document names no key that could be read.</summary>
    protected const string UnknownKey = "-";

    private readonly ILogger _logger;

    protected SynchronousAttestationValidator(ILogger? logger) => _logger = logger ?? NullLogger.Instance;

    public abstract AttestationVariant Variant { get; }

    public ValueTask<AttestationVerdict> ValidateAsync(ReadOnlyMemory<byte> document, ReadOnlyMemory<byte> nonce, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(Validate(document.Span, nonce.Span));
    }

    public AttestationVerdict Validate(ReadOnlySpan<byte> document, ReadOnlySpan<byte> nonce)
    {
        var (verdict, fingerprint) = Check(document, nonce);
        AttestationLog.Report(_logger, Variant.Name, fingerprint, verdict);
        return verdict;
    }

    /// <summary>The variant's own checks, on an envelope already parsed and of this variant.</summary>
    protected abstract (AttestationVerdict Verdict, string Fingerprint) CheckDocument(AttestationDocument document, ReadOnlySpan<byte> nonce);

    private (AttestationVerdict Verdict, string Fingerprint) Check(ReadOnlySpan<byte> bytes, ReadOnlySpan<byte> nonce)
    {
        if (!AttestationDocument.TryParse(bytes, out var document, out var refusal))
        {
            return (refusal, UnknownKey);
        }
        if (document.VariantName != Variant.Name)
        {
            return (AttestationVerdict.Refuse(AttestationFailure.UnknownVariant, $"document is of variant '{document.VariantName}', expected '{Variant.Name}'"), UnknownKey);
        }
        return CheckDocument(document, nonce);
    }
}
