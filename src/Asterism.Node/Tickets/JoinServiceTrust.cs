using System.Security.Cryptography;
using Asterism.Attestation;
using Asterism.Attestation.Identities;
using Asterism.Cloud;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Tickets;

/// <summary>
/// What a node requires of a JoinService before it sends a request or takes a ticket: an attestation document whose
/// key is certified by the node's own provider CA as a control plane, whose boot measurements (the node binary and
/// the boot arguments the provider measured) equal the node's own, and whose PCR 15 is not zero — a control plane
/// that has its keys and serves. A process squatting on :30090 or behind the load balancer matches none of this.
/// </summary>
public static class JoinServiceTrust
{
    /// <summary>The PCRs the provider measures at boot and every node of a cluster shares.</summary>
    public static IReadOnlyList<int> BootPcrs { get; } = [MeasuredBoot.NodeBinaryPcr, MeasuredBoot.BootArgumentsPcr];

    /// <summary>Builds the validator from this node's own boot PCRs (read now, while PCR 15 is still zero) and its provider CA.</summary>
    public static async Task<IAttestationValidator> CreateValidatorAsync(NodeAttestation attestation, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        var policy = await BootPolicyAsync(attestation, cancellationToken);
        return new ExpectedPeerValidator(policy.CreateValidator(loggers), ServingControlPlane, loggers.CreateLogger("attestation"));
    }

    /// <summary>This node's variant, its own boot PCRs (read now) and its provider CA: what any peer of this cluster shows.</summary>
    public static async Task<AttestationPolicy> BootPolicyAsync(NodeAttestation attestation, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(attestation);
        var expected = new List<KeyValuePair<int, Measurement>>();
        foreach (var index in BootPcrs)
        {
            expected.Add(new(index, new Measurement(await attestation.Pcrs.ReadAsync(index, cancellationToken), warnOnly: false)));
        }
        return new AttestationPolicy
        {
            Variant = attestation.Issuer.Variant,
            Measurements = new Measurements(expected),
            ProviderCa = PemEncoding.WriteString("CERTIFICATE", attestation.Authority.CertificateDer),
        };
    }

    /// <summary>A certified control plane with PCR 15 extended (initialized and serving).</summary>
    public static string? ServingControlPlane(AttestationFacts facts)
    {
        ArgumentNullException.ThrowIfNull(facts);
        var identity = ExpectedPeerValidator.Identity(null, NodeIdentity.ControlPlaneRole)(facts);
        if (identity is not null)
        {
            return identity;
        }
        if (!facts.Pcrs.TryGetValue(Measurements.ClusterIdIndex, out var pcr15) || pcr15.AsSpan().IndexOfAnyExcept((byte)0) < 0)
        {
            return $"the JoinService {facts.Identity!.Name} has PCR 15 = 0: it is not an initialized, serving control plane";
        }
        return null;
    }
}
