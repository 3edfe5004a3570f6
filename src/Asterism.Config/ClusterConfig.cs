namespace Asterism.Config;

/// <summary>
/// asterism-conf.yaml: what the operator wants — provider, attestation variant and expected measurements, node counts.
/// </summary>
public sealed class ClusterConfig : IValidatedWorkspaceFile
{
    public const string FileName = "asterism-conf.yaml";
    public const string CurrentVersion = "v1";

    public string Version { get; set; } = CurrentVersion;

    public string Provider { get; set; } = "local";

    public AttestationSection Attestation { get; set; } = new();

    public NodesSection Nodes { get; set; } = new();

    public static ClusterConfig Load(string path) => WorkspaceFile.LoadValidated<ClusterConfig>(path);

    public static ClusterConfig Parse(string yaml) => WorkspaceFile.ParseValidated<ClusterConfig>(yaml, FileName);

    public void Save(string path) => WorkspaceFile.SaveValidated(path, this);

    /// <summary>Throws <see cref="WorkspaceFileException"/> naming the first invalid field.</summary>
    public void Validate(string fileName = FileName)
    {
        void Fail(string field, string problem) => throw new WorkspaceFileException($"{fileName}: {field}: {problem}");

        if (Version != CurrentVersion)
        {
            Fail("version", $"unsupported version \"{Version}\" (expected \"{CurrentVersion}\")");
        }
        if (Provider != "local")
        {
            Fail("provider", $"unknown provider \"{Provider}\" (supported: local)");
        }
        if (Attestation is null)
        {
            Fail("attestation", "missing");
            return;
        }
        if (Attestation.Variant is not ("simulated" or "tpm"))
        {
            Fail("attestation.variant", $"unknown variant \"{Attestation.Variant}\" (supported: simulated, tpm)");
        }
        if (Attestation.Measurements is null)
        {
            Fail("attestation.measurements", "missing");
            return;
        }
        foreach (var (index, entry) in Attestation.Measurements)
        {
            if (index is < 0 or > 23)
            {
                Fail($"attestation.measurements.{index}", "PCR index must be 0-23");
            }
            if (entry is null || !WorkspaceFile.IsHex(entry.Expected, 32))
            {
                Fail($"attestation.measurements.{index}.expected", "must be 64 lowercase hex digits (a SHA-256 PCR value)");
            }
        }
        foreach (var (key, i) in (Attestation.TrustedKeys ?? []).Select((k, i) => (k, i)))
        {
            if (!WorkspaceFile.IsHex(key, 32))
            {
                Fail($"attestation.trustedKeys[{i}]", "must be 64 lowercase hex digits (SHA-256 of the key's SubjectPublicKeyInfo)");
            }
        }
        if (Attestation.ProviderCa is not null
            && (!System.Security.Cryptography.PemEncoding.TryFind(Attestation.ProviderCa, out var pem) || Attestation.ProviderCa[pem.Label] is not "CERTIFICATE"))
        {
            Fail("attestation.providerCa", "must be a PEM certificate (-----BEGIN CERTIFICATE-----)");
        }
        if (Attestation.TpmManufacturerCa is not null && CertificateBundleProblem(Attestation.TpmManufacturerCa) is { } ekProblem)
        {
            Fail("attestation.tpmManufacturerCa", ekProblem);
        }
        if (Attestation.TrustAnyKey && Attestation.Variant == "tpm")
        {
            Fail("attestation.trustAnyKey", "is refused with the tpm variant: a key must be certified (providerCa) or pinned (trustedKeys), never trusted because it signed");
        }
        if (!Attestation.TrustAnyKey && Attestation.ProviderCa is null && (Attestation.TrustedKeys is null || Attestation.TrustedKeys.Count == 0))
        {
            Fail("attestation.providerCa", "missing while trustedKeys is empty: no node could ever be trusted");
        }
        if (Nodes is null)
        {
            Fail("nodes", "missing");
            return;
        }
        if (Nodes.ControlPlanes is < 1 or > 64)
        {
            Fail("nodes.controlPlanes", "must be between 1 and 64");
        }
        if (Nodes.Workers is < 0 or > 128)
        {
            Fail("nodes.workers", "must be between 0 and 128");
        }
    }

    /// <summary>
    /// Why <paramref name="pem"/> is not a bundle of X.509 certificates, or null. Every PEM block must be a CERTIFICATE
    /// that parses: a typo or a stray key block here would otherwise surface only when a TPM is enrolled.
    /// </summary>
    private static string? CertificateBundleProblem(string pem)
    {
        const string Expected = "must hold PEM certificates (-----BEGIN CERTIFICATE-----)";
        var rest = pem.AsSpan();
        var count = 0;
        while (System.Security.Cryptography.PemEncoding.TryFind(rest, out var fields))
        {
            count++;
            if (rest[fields.Label] is not "CERTIFICATE")
            {
                return $"{Expected}; block {count} is \"{rest[fields.Label]}\"";
            }
            var der = new byte[fields.DecodedDataLength];
            if (!Convert.TryFromBase64Chars(rest[fields.Base64Data], der, out var written))
            {
                return $"{Expected}; block {count} is not base64";
            }
            try
            {
                using var certificate = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(der.AsSpan(0, written));
            }
            catch (System.Security.Cryptography.CryptographicException)
            {
                return $"{Expected}; block {count} is not an X.509 certificate";
            }
            rest = rest[fields.Location.End..];
        }
        return count == 0 ? Expected : null;
    }
}

public sealed class AttestationSection
{
    /// <summary><c>simulated</c> (software, local clusters and tests only) or <c>tpm</c>.</summary>
    public string Variant { get; set; } = "simulated";

    /// <summary>
    /// The provider CA certificate (PEM) that certifies every instance's attestation key; `create` writes it. Keys it
    /// certifies are trusted, and their certificates name each node and its role.
    /// </summary>
    public string? ProviderCa { get; set; }

    /// <summary>
    /// The EK CA certificate(s) (PEM) of the TPM vendor(s) whose hardware TPMs <c>asterism tpm enroll</c> may
    /// certify: an attestation key is certified only after credential activation against an EK whose certificate
    /// chains to one of them. Not needed for the local provider, which manufactures its swtpms with its own CA.
    /// </summary>
    public string? TpmManufacturerCa { get; set; }

    /// <summary>
    /// INSECURE, simulated test clusters only: trust any attestation key because it signed. Never written by
    /// `create`; refused with tpm; every command warns while it is set.
    /// </summary>
    public bool TrustAnyKey { get; set; }

    /// <summary>Pinned attestation keys: SHA-256 of each key's SubjectPublicKeyInfo, lowercase hex.</summary>
    public List<string>? TrustedKeys { get; set; }

    /// <summary>Expected PCR values by index.</summary>
    public SortedDictionary<int, MeasurementEntry> Measurements { get; set; } = [];
}

public sealed class MeasurementEntry
{
    /// <summary>Expected value, 64 lowercase hex digits.</summary>
    public string Expected { get; set; } = "";

    /// <summary>A mismatch only warns instead of refusing.</summary>
    public bool WarnOnly { get; set; }
}

public sealed class NodesSection
{
    public int ControlPlanes { get; set; } = 3;

    public int Workers { get; set; } = 2;
}
