using System.Security.Cryptography;
using Asterism.Attestation;
using Asterism.Attestation.Simulated;
using Asterism.Attestation.Tpm;
using Asterism.Tpm;

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
            var socketPath = ParseTpmSocket(options.TpmEndpoint);
            var auth = TpmEndorsementAuth.Load(options.NodeDirectory)
                ?? throw new InvalidOperationException($"the TPM's endorsement auth ({TpmEndorsementAuth.FileName}) is missing from the node directory");
            try
            {
                var session = await TpmAttestationSession.ConnectSwtpmAsync(socketPath, auth, cancellationToken);
                return new NodeAttestation(session.Issuer, session.Pcrs, session);
            }
            finally
            {
                CryptographicOperations.ZeroMemory(auth);
            }
        }
        throw new NotSupportedException($"attestation variant \"{options.Variant}\" is not supported by this node");
    }

    /// <summary>
    /// The TPM is only reached through swtpm's Unix socket in the instance's 0700 directory: <c>unix:/abs/path</c>
    /// or <c>/abs/path</c>. Any other form (a TCP HOST:PORT above all, which every local process could dial) is refused.
    /// </summary>
    public static string ParseTpmSocket(string? value)
    {
        var path = value is not null && value.StartsWith("unix:", StringComparison.Ordinal) ? value["unix:".Length..] : value;
        if (string.IsNullOrEmpty(path) || !Path.IsPathFullyQualified(path) || path.Contains('\0'))
        {
            throw new ArgumentException("the tpm variant needs --tpm unix:/absolute/path/to/tpm.sock (TCP endpoints are refused)");
        }
        return path;
    }

    public ValueTask DisposeAsync() => owner?.DisposeAsync() ?? ValueTask.CompletedTask;
}
