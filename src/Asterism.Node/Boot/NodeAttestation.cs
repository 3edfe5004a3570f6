using System.Net;
using Asterism.Attestation;
using Asterism.Attestation.Simulated;
using Asterism.Attestation.Tpm;

namespace Asterism.Node.Boot;

/// <summary>The node's attestation issuer and the PCR bank it quotes, per variant.</summary>
public sealed class NodeAttestation(IAttestationIssuer issuer, IPcrBank pcrs, IAsyncDisposable? owner) : IAsyncDisposable
{
    public IAttestationIssuer Issuer { get; } = issuer;

    public IPcrBank Pcrs { get; } = pcrs;

    public static async Task<NodeAttestation> CreateAsync(NodeOptions options, CancellationToken cancellationToken)
    {
        if (options.Variant == AttestationVariant.Simulated.Name)
        {
            Directory.CreateDirectory(options.NodeDirectory);
            var key = SimulatedAttestationKey.LoadOrCreate(options.NodeDirectory);
            var bank = new SimulatedPcrBank();
            return new NodeAttestation(new SimulatedIssuer(key, bank), bank, null);
        }
        if (options.Variant == AttestationVariant.Tpm.Name)
        {
            // The provider (the firmware) has measured the boot into this TPM already; the node only quotes and
            // extends PCR 15. It keeps the one connection swtpm serves until it stops.
            if (!IPEndPoint.TryParse(options.TpmEndpoint ?? "", out var endpoint) || endpoint.Port == 0 || !IPAddress.IsLoopback(endpoint.Address))
            {
                throw new ArgumentException("the tpm variant needs --tpm HOST:PORT on a loopback address");
            }
            var session = await TpmAttestationSession.ConnectSwtpmAsync(endpoint, cancellationToken);
            return new NodeAttestation(session.Issuer, session.Pcrs, session);
        }
        throw new NotSupportedException($"attestation variant \"{options.Variant}\" is not supported by this node");
    }

    public ValueTask DisposeAsync() => owner?.DisposeAsync() ?? ValueTask.CompletedTask;
}
