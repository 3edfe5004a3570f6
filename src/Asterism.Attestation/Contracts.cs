namespace Asterism.Attestation;

/// <summary>An attestation kind and the X.509 extension OID its documents travel under in aTLS certificates.</summary>
public sealed record AttestationVariant(string Name, string Oid)
{
    /// <summary>
    /// The arc under which every Asterism variant has its OID: a UUID-derived OID (ITU-T X.667, arc 2.25),
    /// ours without registration (UUID 9d80b4c7-b03b-4fa3-8bea-d28c3ccdd002).
    /// </summary>
    public const string OidArc = "2.25.209357075990798312057396631763709448194";

    /// <summary>Software attestation for local clusters and tests; never a security boundary.</summary>
    public static readonly AttestationVariant Simulated = new("simulated", OidArc + ".1");

    /// <summary>TPM 2.0 quotes (swtpm locally, /dev/tpmrm0 on real machines).</summary>
    public static readonly AttestationVariant Tpm = new("tpm", OidArc + ".2");

    public static IReadOnlyList<AttestationVariant> All { get; } = [Simulated, Tpm];

    public static bool TryParse(string? name, out AttestationVariant variant)
    {
        foreach (var v in All)
        {
            if (string.Equals(v.Name, name, StringComparison.Ordinal))
            {
                variant = v;
                return true;
            }
        }
        variant = Simulated;
        return false;
    }

    public static AttestationVariant? FromOid(string oid) => All.FirstOrDefault(v => v.Oid == oid);

    public override string ToString() => Name;
}

/// <summary>Produces attestation documents bound to caller-chosen user data and a verifier nonce.</summary>
public interface IAttestationIssuer
{
    AttestationVariant Variant { get; }

    /// <summary>Issues a document attesting this node's measurements, bound to <paramref name="userData"/> and <paramref name="nonce"/>.</summary>
    ValueTask<byte[]> IssueAsync(ReadOnlyMemory<byte> userData, ReadOnlyMemory<byte> nonce, CancellationToken cancellationToken);
}

/// <summary>Checks attestation documents. Expected failures are verdicts, never exceptions.</summary>
public interface IAttestationValidator
{
    AttestationVariant Variant { get; }

    ValueTask<AttestationVerdict> ValidateAsync(ReadOnlyMemory<byte> document, ReadOnlyMemory<byte> nonce, CancellationToken cancellationToken);
}

/// <summary>Why a document was refused; each failure has its own code so callers and logs can tell them apart.</summary>
public enum AttestationFailure
{
    None = 0,
    Malformed,
    Oversized,
    UnsupportedVersion,
    UnknownVariant,
    NonceMismatch,
    UserDataMismatch,
    BadSignature,
    UntrustedKey,
    MeasurementMismatch,
    PcrDigestMismatch,
    MissingExtension,
    Timeout,

    /// <summary>The validator itself failed (e.g. an exception); the peer is refused, details are in the local log.</summary>
    ValidatorError,

    /// <summary>The attestation key is not a restricted, fixedTPM signing key, so it could sign forged quotes.</summary>
    KeyNotRestricted,

    /// <summary>The quote does not cover exactly the PCRs (bank and indices) the variant requires and sent.</summary>
    PcrSelectionMismatch,

    /// <summary>The document is valid but its certified identity (name, role) or state is not the one this verifier expects.</summary>
    IdentityMismatch,
}

/// <summary>
/// What a successful validation established about the peer: its variant, PCR values, attestation key and, when the
/// key is certified by a configured authority, the node identity (name and role) the certificate names.
/// </summary>
public sealed record AttestationFacts(
    AttestationVariant Variant,
    IReadOnlyDictionary<int, byte[]> Pcrs,
    string AttestationKeyFingerprint,
    Identities.NodeIdentity? Identity = null);

/// <summary>The result of validating one document.</summary>
public sealed record AttestationVerdict
{
    public bool Accepted => Failure == AttestationFailure.None;
    public AttestationFailure Failure { get; init; }
    public string Message { get; init; } = "";
    public byte[]? UserData { get; init; }
    public AttestationFacts? Facts { get; init; }
    public IReadOnlyList<string> Warnings { get; init; } = [];

    public static AttestationVerdict Accept(byte[] userData, AttestationFacts facts, IReadOnlyList<string> warnings) =>
        new() { UserData = userData, Facts = facts, Warnings = warnings };

    public static AttestationVerdict Refuse(AttestationFailure failure, string message) =>
        new() { Failure = failure, Message = message };

    public override string ToString() => Accepted ? "accepted" : $"refused ({Failure}): {Message}";
}

/// <summary>A bank of SHA-256 PCRs (indices 0-23) with TPM 2.0 extend semantics.</summary>
public interface IPcrBank
{
    /// <summary>PCR[i] = SHA-256(PCR[i] || digest), digest 32 bytes.</summary>
    ValueTask ExtendAsync(int index, ReadOnlyMemory<byte> digest, CancellationToken cancellationToken);

    /// <summary>Like TPM2_PCR_Event: PCR[i] = SHA-256(PCR[i] || SHA-256(data)).</summary>
    ValueTask MeasureEventAsync(int index, ReadOnlyMemory<byte> data, CancellationToken cancellationToken);

    ValueTask<byte[]> ReadAsync(int index, CancellationToken cancellationToken);
}
