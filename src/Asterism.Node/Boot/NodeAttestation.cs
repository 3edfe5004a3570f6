using Asterism.Attestation;
using Asterism.Attestation.Simulated;

namespace Asterism.Node.Boot;

/// <summary>The node's attestation issuer and the PCR bank it quotes, per variant.</summary>
public sealed class NodeAttestation(IAttestationIssuer issuer, IPcrBank pcrs, IAsyncDisposable? owner) : IAsyncDisposable
{
    public IAttestationIssuer Issuer { get; } = issuer;

    public IPcrBank Pcrs { get; } = pcrs;

    public static Task<NodeAttestation> CreateAsync(NodeOptions options, CancellationToken cancellationToken)
    {
        _ = cancellationToken;
        if (options.Variant == AttestationVariant.Simulated.Name)
        {
            Directory.CreateDirectory(options.NodeDirectory);
            var key = SimulatedAttestationKey.LoadOrCreate(options.NodeDirectory);
            var bank = new SimulatedPcrBank();
            return Task.FromResult(new NodeAttestation(new SimulatedIssuer(key, bank), bank, null));
        }
        throw new NotSupportedException($"attestation variant \"{options.Variant}\" is not supported by this node");
    }

    public ValueTask DisposeAsync() => owner?.DisposeAsync() ?? ValueTask.CompletedTask;
}
