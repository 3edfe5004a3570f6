using Asterism.Tpm;

namespace Asterism.Attestation.Tpm;

/// <summary>
/// A node's TPM for the `tpm` variant: one connection (swtpm serves one client at a time), the attestation key
/// created (re-derived) on it, the issuer quoting with it and the PCR bank. Disposing flushes the key and
/// disconnects, so the provider (the "firmware") can shut the TPM down cleanly afterwards.
/// </summary>
public sealed class TpmAttestationSession : IAsyncDisposable
{
    private TpmAttestationSession(TpmClient client, TpmAttestationKey key, byte[]? identityCertificate)
    {
        Client = client;
        Key = key;
        Issuer = new TpmIssuer(key, identityCertificate);
        Pcrs = new TpmPcrBank(client);
    }

    public TpmClient Client { get; }

    public TpmAttestationKey Key { get; }

    public TpmIssuer Issuer { get; }

    public TpmPcrBank Pcrs { get; }

    /// <summary>The key's fingerprint as listed in <c>trustedKeys</c>.</summary>
    public string KeyFingerprint => TpmValidator.FingerprintOf(Key.PublicKey);

    /// <summary>
    /// Connects to swtpm's command socket (a Unix socket in the instance's 0700 directory) and creates the
    /// attestation key under the endorsement hierarchy, authorised by <paramref name="endorsementAuth"/> (the
    /// provider sets it when it manufactures the TPM; empty for a TPM nobody locked). <paramref name="identityCertificate"/>
    /// (DER) is the AK's identity certificate its documents carry.
    /// </summary>
    public static async Task<TpmAttestationSession> ConnectSwtpmAsync(
        string socketPath, ReadOnlyMemory<byte> endorsementAuth, byte[]? identityCertificate, CancellationToken cancellationToken)
    {
        var client = await TpmClient.ConnectSwtpmAsync(socketPath, null, cancellationToken).ConfigureAwait(false);
        return await OpenAsync(client, endorsementAuth, identityCertificate, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>As <see cref="ConnectSwtpmAsync"/>, for any endpoint <see cref="TpmClient.ConnectEndpointAsync"/> takes (swtpm socket or /dev TPM).</summary>
    public static async Task<TpmAttestationSession> ConnectAsync(
        string endpoint, ReadOnlyMemory<byte> endorsementAuth, byte[]? identityCertificate, CancellationToken cancellationToken)
    {
        var client = await TpmClient.ConnectEndpointAsync(endpoint, null, cancellationToken).ConfigureAwait(false);
        return await OpenAsync(client, endorsementAuth, identityCertificate, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Creates the attestation key on <paramref name="client"/>; the session owns the client from then on.</summary>
    public static async Task<TpmAttestationSession> OpenAsync(
        TpmClient client, ReadOnlyMemory<byte> endorsementAuth, byte[]? identityCertificate, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        try
        {
            var key = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, endorsementAuth, cancellationToken).ConfigureAwait(false);
            return new TpmAttestationSession(client, key, identityCertificate);
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Key.DisposeAsync().ConfigureAwait(false);
        }
        catch (TpmException)
        {
            // The connection is gone or broken: the TPM drops transient objects at its next reset anyway.
        }
        finally
        {
            await Client.DisposeAsync().ConfigureAwait(false);
        }
    }
}
