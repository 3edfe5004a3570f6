namespace Asterism.Attestation.Simulated;

/// <summary>
/// Issues `simulated` documents: the node's PCRs 0-23 and SHA-256(userData ‖ nonce), signed by its software key,
/// with the key's identity certificate (DER, from the provider) when it has one.
/// </summary>
public sealed class SimulatedIssuer(SimulatedAttestationKey key, SimulatedPcrBank pcrs, byte[]? identityCertificate = null) : IAttestationIssuer
{
    private readonly byte[] _identity = identityCertificate ?? [];
    private readonly SimulatedAttestationKey _key = key ?? throw new ArgumentNullException(nameof(key));
    private readonly SimulatedPcrBank _pcrs = pcrs ?? throw new ArgumentNullException(nameof(pcrs));

    public AttestationVariant Variant => AttestationVariant.Simulated;

    public byte[] Issue(ReadOnlySpan<byte> userData, ReadOnlySpan<byte> nonce)
    {
        var values = _pcrs.ReadAll();
        var signature = _key.Sign(SimulatedQuote.SignedData(values, userData, nonce));
        var quote = new SimulatedQuote(_key.PublicKeySpki, values, signature);
        return new AttestationDocument(Variant.Name, userData, nonce, _identity, quote.Encode()).Encode();
    }

    public ValueTask<byte[]> IssueAsync(ReadOnlyMemory<byte> userData, ReadOnlyMemory<byte> nonce, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(Issue(userData.Span, nonce.Span));
    }
}
