using Asterism.Attestation.Identities;
using Asterism.Attestation.Simulated;

namespace Asterism.Cloud.Local;

/// <summary>
/// What the provider puts into a node's directory before each start, as a cloud provisions a VM: the provider CA
/// certificate (to judge JoinServices by) and, for the simulated variant, the instance's attestation key and its
/// identity certificate. The tpm variant's identity is issued by the firmware after credential activation.
/// </summary>
public static class NodeProvisioning
{
    /// <summary>In the init target's node directory: the hex SHA-256 of the workspace's init secret.</summary>
    public const string InitSecretHashFileName = "init-secret.sha256";

    /// <summary>Below the node directory: where the node mounts its state filesystem (0700).</summary>
    public const string StateDirectoryName = "state";

    /// <summary>Below the node directory: the node's private mounts (the FUSE block file) and runtime files (0700).</summary>
    public const string RuntimeDirectoryName = "run";

    /// <summary>The instance the CLI initializes: the first control-plane node of the spec.</summary>
    public static bool IsInitTarget(CloudSpec spec, InstancePlan plan) =>
        spec.PlanInstances().FirstOrDefault(p => p.Role == InstanceRole.ControlPlane)?.Name == plan.Name;

    /// <summary>The init-secret boot event of the init target (PCR <see cref="MeasuredBoot.InitSecretPcr"/>), or null.</summary>
    public static BootEvent? InitSecretEvent(CloudSpec spec, InstancePlan plan) =>
        spec.InitSecretSha256 is { } hash && IsInitTarget(spec, plan)
            ? new BootEvent { Pcr = MeasuredBoot.InitSecretPcr, Digest = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.ASCII.GetBytes("asterism-init-secret-sha256\0" + hash))), Description = "init configuration" }
            : null;

    /// <summary>Ensures the node directory (0700) holds the CA certificate and, for simulated, a certified key.</summary>
    public static void Provision(ProviderCa ca, CloudSpec spec, InstancePlan plan, string nodeDirectory)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(ca);
        ArgumentNullException.ThrowIfNull(plan);
        OwnerOnly.CreateDirectory(nodeDirectory);
        var caPath = IdentityFiles.AuthorityPath(nodeDirectory);
        if (!File.Exists(caPath) || !IdentityFiles.ReadCertificate(caPath).AsSpan().SequenceEqual(ca.Certificate.RawData))
        {
            IdentityFiles.WriteCertificate(caPath, ca.Certificate.RawData);
        }
        var initHashPath = Path.Combine(nodeDirectory, InitSecretHashFileName);
        if (spec.InitSecretSha256 is { } hash && IsInitTarget(spec, plan))
        {
            IdentityFiles.WritePrivateFile(initHashPath, System.Text.Encoding.ASCII.GetBytes(hash + "\n"));
        }
        else if (File.Exists(initHashPath))
        {
            File.Delete(initHashPath);
        }
        if (spec.Variant != CloudSpec.SimulatedVariant)
        {
            return;
        }
        var keyPath = Path.Combine(nodeDirectory, SimulatedAttestationKey.FileName);
        if (!File.Exists(keyPath))
        {
            using var created = SimulatedAttestationKey.Create();
            created.Save(keyPath);
        }
        using var key = SimulatedAttestationKey.Load(keyPath);
        EnsureIdentity(ca, plan, nodeDirectory, key.PublicKeySpki);
    }

    /// <summary>Issues the identity certificate for <paramref name="attestationKeySpki"/> unless a valid one from this CA for this key is there.</summary>
    public static void EnsureIdentity(ProviderCa ca, InstancePlan plan, string nodeDirectory, ReadOnlySpan<byte> attestationKeySpki)
    {
        if (HasValidIdentity(ca, plan, nodeDirectory, attestationKeySpki))
        {
            return;
        }
        IdentityFiles.WriteCertificate(IdentityFiles.CertificatePath(nodeDirectory), ca.IssueIdentity(plan.Name, plan.Role.ToWire(), attestationKeySpki));
    }

    /// <summary>True when the node directory holds an identity certificate from this CA for this instance, role and key.</summary>
    public static bool HasValidIdentity(ProviderCa ca, InstancePlan plan, string nodeDirectory, ReadOnlySpan<byte> attestationKeySpki)
    {
        ArgumentNullException.ThrowIfNull(ca);
        ArgumentNullException.ThrowIfNull(plan);
        var path = IdentityFiles.CertificatePath(nodeDirectory);
        if (!File.Exists(path))
        {
            return false;
        }
        using var authority = ca.CreateAuthority();
        var check = authority.Verify(IdentityFiles.ReadCertificate(path), attestationKeySpki, DateTimeOffset.UtcNow);
        return check.Identity is { } existing && existing.Name == plan.Name && existing.Role == plan.Role.ToWire();
    }
}
