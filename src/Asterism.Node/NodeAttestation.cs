using System.Security.Cryptography;
using Asterism.Attestation;
using Asterism.Attestation.Identities;
using Asterism.Attestation.Simulated;
using Asterism.Attestation.Tpm;
using Asterism.Tpm;

namespace Asterism.Node;

/// <summary>
/// The node's attestation issuer, the PCR bank it quotes, and its certified identity: the provider put the CA
/// certificate, the identity certificate (and for simulated the attestation key) into the node directory before it
/// started the node. A node whose identity does not verify against that CA, or names another instance or role than
/// the node was started as, does not boot.
/// </summary>
public sealed class NodeAttestation(IAttestationIssuer issuer, IPcrBank pcrs, NodeIdentity identity, IdentityAuthority authority, IAsyncDisposable? owner) : IAsyncDisposable
{
    public IAttestationIssuer Issuer { get; } = issuer;

    public IPcrBank Pcrs { get; } = pcrs;

    /// <summary>Who this node is, as its provider certified it.</summary>
    public NodeIdentity Identity { get; } = identity;

    /// <summary>The provider CA: what this node judges JoinServices by.</summary>
    public IdentityAuthority Authority { get; } = authority;

    public static async Task<NodeAttestation> CreateAsync(NodeOptions options, TimeProvider time, CancellationToken cancellationToken)
    {
        var authority = new IdentityAuthority(IdentityFiles.ReadCertificate(IdentityFiles.AuthorityPath(options.NodeDirectory)));
        var certificate = IdentityFiles.ReadCertificate(IdentityFiles.CertificatePath(options.NodeDirectory));
        if (options.Variant == AttestationVariant.Simulated.Name)
        {
            var keyPath = Path.Combine(options.NodeDirectory, SimulatedAttestationKey.FileName);
            if (!File.Exists(keyPath))
            {
                throw new InvalidDataException($"{keyPath} does not exist: this node has no attestation key from its provider");
            }
            var key = SimulatedAttestationKey.Load(keyPath);
            var identity = Verify(authority, certificate, key.PublicKeySpki, options, time);
            var bank = new SimulatedPcrBank();
            return new NodeAttestation(new SimulatedIssuer(key, bank, certificate), bank, identity, authority, null);
        }
        if (options.Variant == AttestationVariant.Tpm.Name)
        {
            // The provider (the firmware) has measured the boot into this TPM already; the node only quotes and
            // extends PCR 15. It keeps the one connection swtpm serves until it stops.
            // A provider's swtpm always has its endorsement auth set (the file is in the node directory); a hardware
            // TPM enrolled with `asterism tpm enroll` has one only when the operator gave it.
            var isDevice = TpmClient.IsDeviceEndpoint(options.TpmEndpoint);
            var auth = TpmEndorsementAuth.Load(options.NodeDirectory)
                ?? (isDevice ? [] : throw new InvalidDataException($"the TPM's endorsement auth ({TpmEndorsementAuth.FileName}) is missing from the node directory"));
            TpmAttestationSession session;
            try
            {
                session = await TpmAttestationSession.ConnectAsync(options.TpmEndpoint!, auth, certificate, cancellationToken);
            }
            finally
            {
                CryptographicOperations.ZeroMemory(auth);
            }
            try
            {
                var identity = Verify(authority, certificate, session.Key.PublicKey.ExportSubjectPublicKeyInfo(), options, time);
                return new NodeAttestation(session.Issuer, session.Pcrs, identity, authority, session);
            }
            catch
            {
                await session.DisposeAsync();
                throw;
            }
        }
        throw new NotSupportedException($"attestation variant \"{options.Variant}\" is not supported by this node");
    }

    private Task<IAttestationValidator>? _joinServiceValidator;

    /// <summary>
    /// What this node requires of a JoinService (<see cref="Tickets.JoinServiceTrust"/>), built once per boot from the
    /// node's own boot PCRs, which do not change while it asks for keys.
    /// </summary>
    public Task<IAttestationValidator> JoinServiceValidatorAsync(Microsoft.Extensions.Logging.ILoggerFactory loggers, CancellationToken cancellationToken) =>
        LazyInitializer.EnsureInitialized(ref _joinServiceValidator, () => Tickets.JoinServiceTrust.CreateValidatorAsync(this, loggers, CancellationToken.None))
            .WaitAsync(cancellationToken);

    public ValueTask DisposeAsync() => owner?.DisposeAsync() ?? ValueTask.CompletedTask;

    private static NodeIdentity Verify(IdentityAuthority authority, byte[] certificate, byte[] keySpki, NodeOptions options, TimeProvider time)
    {
        var check = authority.Verify(certificate, keySpki, time.GetUtcNow());
        if (check.Identity is not { } identity)
        {
            throw new InvalidDataException("this node's identity certificate does not verify against its provider CA: " + check.Error);
        }
        if (identity.Name != options.Name || identity.Role != options.Role.Name())
        {
            throw new InvalidDataException($"this node's identity certificate names {identity.Name} ({identity.Role}), but the node was started as {options.Name} ({options.Role.Name()})");
        }
        return identity;
    }
}
