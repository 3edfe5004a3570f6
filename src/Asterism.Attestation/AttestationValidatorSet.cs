namespace Asterism.Attestation;

/// <summary>
/// Chooses the validator for a document by its variant OID (the aTLS certificate extension it came under) or name.
/// Built once from configuration; lookups are lock-free and it is safe for concurrent use.
/// </summary>
public sealed class AttestationValidatorSet
{
    private readonly Dictionary<string, IAttestationValidator> _byOid;

    public AttestationValidatorSet(IEnumerable<IAttestationValidator> validators)
    {
        ArgumentNullException.ThrowIfNull(validators);
        _byOid = new Dictionary<string, IAttestationValidator>(StringComparer.Ordinal);
        foreach (var v in validators)
        {
            if (!_byOid.TryAdd(v.Variant.Oid, v))
            {
                throw new ArgumentException($"two validators for variant {v.Variant.Name} ({v.Variant.Oid})", nameof(validators));
            }
        }
        if (_byOid.Count == 0)
        {
            throw new ArgumentException("at least one validator is required", nameof(validators));
        }
    }

    public AttestationValidatorSet(params IAttestationValidator[] validators)
        : this((IEnumerable<IAttestationValidator>)validators)
    {
    }

    public IReadOnlyCollection<string> Oids => _byOid.Keys;

    public IEnumerable<IAttestationValidator> Validators => _byOid.Values;

    public bool TryGetByOid(string oid, out IAttestationValidator validator) => _byOid.TryGetValue(oid, out validator!);

    public bool TryGetByName(string name, out IAttestationValidator validator)
    {
        validator = _byOid.Values.FirstOrDefault(v => string.Equals(v.Variant.Name, name, StringComparison.Ordinal))!;
        return validator is not null;
    }

    /// <summary>Validates with the validator for <paramref name="oid"/>; an OID without one is refused as UnknownVariant.</summary>
    public ValueTask<AttestationVerdict> ValidateAsync(string oid, ReadOnlyMemory<byte> document, ReadOnlyMemory<byte> nonce, CancellationToken cancellationToken)
    {
        if (!_byOid.TryGetValue(oid, out var validator))
        {
            var known = AttestationVariant.FromOid(oid);
            return ValueTask.FromResult(AttestationVerdict.Refuse(
                AttestationFailure.UnknownVariant,
                known is null ? $"unknown attestation variant OID {oid}" : $"attestation variant {known.Name} is not accepted here"));
        }
        return validator.ValidateAsync(document, nonce, cancellationToken);
    }
}
