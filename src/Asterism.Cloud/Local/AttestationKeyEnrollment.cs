using System.Diagnostics;
using System.Security.Cryptography.X509Certificates;
using Asterism.Attestation.Identities;
using Asterism.Tpm;

namespace Asterism.Cloud.Local;

/// <summary>What <see cref="AttestationKeyEnrollment.EnrollAsync"/> did.</summary>
/// <param name="Certified">True when it issued a new identity certificate; false when the node directory already held a valid one for this AK.</param>
/// <param name="AkName">Hex TPM name of the attestation key.</param>
/// <param name="Elapsed">Time spent in the registrar (zero when nothing was issued).</param>
public sealed record EnrollmentOutcome(bool Certified, string AkName, TimeSpan Elapsed);

/// <summary>A file enrollment writes into the node directory: its name there and its content.</summary>
public sealed record NodeDirectoryFile(string Name, byte[] Content);

/// <summary>
/// One TPM's enrollment: create its attestation key, and unless the node directory already holds a valid identity for
/// exactly that key, prove through <see cref="TpmRegistrar"/> (EK certificate chained to a trusted manufacturer CA,
/// credential activation) that the key lives in that TPM, then issue and write the identity certificate. The local
/// provider runs it for each swtpm it manufactured (trusting its own manufacturer CA); <c>asterism tpm enroll</c> runs
/// the same code for a hardware TPM (<c>/dev/tpmrm0</c>) with the TPM vendor's EK CA from the configuration.
/// </summary>
public static class AttestationKeyEnrollment
{
    /// <summary>Enrolls the TPM behind <paramref name="client"/> as <paramref name="plan"/>; throws <see cref="CloudConfigException"/> when refused.</summary>
    public static Task<EnrollmentOutcome> EnrollAsync(
        TpmClient client, ReadOnlyMemory<byte> endorsementAuth, X509Certificate2Collection manufacturerCas, ProviderCa ca,
        InstancePlan plan, string nodeDir, CancellationToken cancellationToken) =>
        EnrollAsync(client, endorsementAuth, manufacturerCas, ca, plan, nodeDir, WriteByPath, cancellationToken);

    /// <summary>
    /// As the other overload, but <paramref name="writeFiles"/> writes the certificates into the node directory (and
    /// may refuse it by throwing), only once the TPM was certified: the CLI, writing where an operator said, writes
    /// through one descriptor of a directory it verified, so a path swapped in between cannot redirect the files.
    /// </summary>
    public static async Task<EnrollmentOutcome> EnrollAsync(
        TpmClient client, ReadOnlyMemory<byte> endorsementAuth, X509Certificate2Collection manufacturerCas, ProviderCa ca,
        InstancePlan plan, string nodeDir, Action<string, IReadOnlyList<NodeDirectoryFile>> writeFiles, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(writeFiles);
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(manufacturerCas);
        ArgumentNullException.ThrowIfNull(ca);
        ArgumentNullException.ThrowIfNull(plan);
        await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, endorsementAuth, cancellationToken).ConfigureAwait(false);
        var akName = Convert.ToHexStringLower(ak.PublicKey.ComputeName());
        var spki = ak.PublicKey.ExportSubjectPublicKeyInfo();
        if (NodeProvisioning.HasValidIdentity(ca, plan, nodeDir, spki))
        {
            return new EnrollmentOutcome(false, akName, TimeSpan.Zero);
        }
        var watch = Stopwatch.StartNew();
        var registrar = new TpmRegistrar(manufacturerCas, key => ca.IssueIdentity(plan.Name, plan.Role.ToWire(), key));
        var result = await registrar.RegisterAsync(client, ak, endorsementAuth, cancellationToken).ConfigureAwait(false);
        if (!result.IsCertified)
        {
            throw new EnrollmentRefusedException(plan.Name, result.Status, result.Reason);
        }
        writeFiles(nodeDir,
        [
            new NodeDirectoryFile(IdentityFiles.AuthorityFileName, IdentityFiles.EncodeCertificate(ca.Certificate.RawData)),
            new NodeDirectoryFile(IdentityFiles.CertificateFileName, IdentityFiles.EncodeCertificate(result.IdentityCertificate!)),
        ]);
        return new EnrollmentOutcome(true, akName, watch.Elapsed);
    }

    /// <summary>The provider's writer: its own instance directories, created 0700, files 0600 by path.</summary>
    private static void WriteByPath(string nodeDir, IReadOnlyList<NodeDirectoryFile> files)
    {
        OwnerOnly.CreateDirectory(nodeDir);
        foreach (var file in files)
        {
            IdentityFiles.WritePrivateFile(Path.Combine(nodeDir, file.Name), file.Content);
        }
    }
}

/// <summary>The registrar refused to certify an attestation key; nothing was written.</summary>
public sealed class EnrollmentRefusedException(string instance, TpmRegistrationStatus status, string reason)
    : CloudConfigException($"the attestation key of {instance} was not certified ({status}): {reason}")
{
    public TpmRegistrationStatus Status { get; } = status;

    public string Reason { get; } = reason;
}
