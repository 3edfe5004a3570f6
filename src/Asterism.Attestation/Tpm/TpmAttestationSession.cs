using System.Net;
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

    /// <summary>Connects to swtpm's command port (loopback only) and creates the attestation key.</summary>
    public static async Task<TpmAttestationSession> ConnectSwtpmAsync(IPEndPoint endpoint, CancellationToken cancellationToken) =>
        await ConnectSwtpmAsync(endpoint, null, cancellationToken).ConfigureAwait(false);

    /// <summary>As <see cref="ConnectSwtpmAsync(IPEndPoint, CancellationToken)"/>, with the AK's identity certificate (DER) for its documents.</summary>
    public static async Task<TpmAttestationSession> ConnectSwtpmAsync(IPEndPoint endpoint, byte[]? identityCertificate, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        if (!IPAddress.IsLoopback(endpoint.Address))
        {
            throw new ArgumentException("the swtpm endpoint must be a loopback address", nameof(endpoint));
        }
        var client = await TpmClient.ConnectSwtpmAsync(endpoint, null, cancellationToken).ConfigureAwait(false);
        return await OpenAsync(client, identityCertificate, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Creates the attestation key on <paramref name="client"/>; the session owns the client from then on.</summary>
    public static Task<TpmAttestationSession> OpenAsync(TpmClient client, CancellationToken cancellationToken) =>
        OpenAsync(client, null, cancellationToken);

    /// <summary>As <see cref="OpenAsync(TpmClient, CancellationToken)"/>, with the AK's identity certificate (DER) for its documents.</summary>
    public static async Task<TpmAttestationSession> OpenAsync(TpmClient client, byte[]? identityCertificate, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        try
        {
            var key = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);
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
