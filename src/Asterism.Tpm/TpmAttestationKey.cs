using System.Security.Cryptography;

namespace Asterism.Tpm;

/// <summary>A quote with the PCR values it covers, read right after it and checked against its digest.</summary>
public sealed record TpmQuote(byte[] Attest, byte[] Signature, IReadOnlyDictionary<int, byte[]> Pcrs);

/// <summary>
/// The attestation key: a restricted ECDSA P-256/SHA-256 signing primary key, created from the endorsement
/// hierarchy's seed (so the same TPM always yields the same key, across reboots and owner clears), with
/// fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|restricted|sign|noDA and an empty auth. noDA keeps
/// quotes working when the dictionary-attack lockout trips after unclean swtpm stops. The key stays loaded in
/// one of the TPM's few transient slots until disposed, which flushes it.
/// </summary>
public sealed class TpmAttestationKey : IAsyncDisposable
{
    /// <summary>The object attributes of the attestation key.</summary>
    public const TpmObjectAttributes KeyAttributes = TpmObjectAttributes.FixedTpm | TpmObjectAttributes.FixedParent
        | TpmObjectAttributes.SensitiveDataOrigin | TpmObjectAttributes.UserWithAuth | TpmObjectAttributes.NoDa
        | TpmObjectAttributes.Restricted | TpmObjectAttributes.Sign;

    private const int MaxQuoteAttempts = 3;

    private readonly TpmClient _client;
    private bool _disposed;

    private TpmAttestationKey(TpmClient client, uint handle, TpmEccPublicKey publicKey)
    {
        _client = client;
        Handle = handle;
        PublicKey = publicKey;
    }

    /// <summary>
    /// The TPMT_PUBLIC template: ECC, nameAlg SHA-256, the attributes above, empty policy, no symmetric,
    /// ECDSA-SHA256, NIST P-256, no KDF, empty unique. Equivalent to
    /// <c>tpm2_createprimary -C e -G ecc256:ecdsa-sha256:null -g sha256 -a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign|noda'</c>.
    /// </summary>
    public static byte[] Template()
    {
        var w = new TpmWriter(32)
            .WriteUInt16(TpmAlg.Ecc)
            .WriteUInt16(TpmAlg.Sha256)
            .WriteUInt32((uint)KeyAttributes)
            .WriteUInt16(0) // authPolicy
            .WriteUInt16(TpmAlg.Null) // symmetric
            .WriteUInt16(TpmAlg.Ecdsa).WriteUInt16(TpmAlg.Sha256)
            .WriteUInt16(TpmConst.EccNistP256)
            .WriteUInt16(TpmAlg.Null) // kdf
            .WriteUInt16(0).WriteUInt16(0); // unique: empty x, y
        return w.ToArray();
    }

    /// <summary>The transient handle while loaded.</summary>
    public uint Handle { get; }

    public TpmEccPublicKey PublicKey { get; }

    /// <summary>Creates (re-derives) the key under <paramref name="hierarchy"/>; endorsement is the default.</summary>
    public static async Task<TpmAttestationKey> CreateAsync(
        TpmClient client, TpmHierarchy hierarchy, ReadOnlyMemory<byte> hierarchyAuth, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        var created = await client.CreatePrimaryAsync(hierarchy, Template(), hierarchyAuth, cancellationToken).ConfigureAwait(false);
        try
        {
            var key = TpmEccPublicKey.Parse(created.PublicArea);
            if (!key.IsRestrictedSigningKey || !CryptographicOperations.FixedTimeEquals(key.ComputeName(), created.Name))
            {
                throw new TpmFormatException("the TPM returned a key that does not match the attestation key template");
            }
            return new TpmAttestationKey(client, created.Handle, key);
        }
        catch
        {
            await client.FlushContextAsync(created.Handle, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Quotes the SHA-256 PCRs <paramref name="pcrs"/> with <paramref name="qualifyingData"/> (e.g. SHA-256(userData ‖ nonce)),
    /// then reads those PCRs and checks they hash to the quoted digest; if a PCR changed in between it quotes again.
    /// </summary>
    public async Task<TpmQuote> QuoteAsync(ReadOnlyMemory<byte> qualifyingData, IEnumerable<int> pcrs, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var selection = TpmPcrSelection.Sha256(pcrs);
        for (var attempt = 1; ; attempt++)
        {
            var quote = await _client.QuoteAsync(Handle, ReadOnlyMemory<byte>.Empty, qualifyingData, selection, cancellationToken).ConfigureAwait(false);
            var values = await _client.PcrReadAsync(selection.Indices, cancellationToken).ConfigureAwait(false);
            var attest = TpmQuoteAttestation.Parse(quote.Attest);
            var digest = TpmQuoteVerifier.ComputePcrDigest(attest.PcrSelections, values);
            if (CryptographicOperations.FixedTimeEquals(digest, attest.PcrDigest))
            {
                return new TpmQuote(quote.Attest, quote.Signature, values);
            }
            if (attempt == MaxQuoteAttempts)
            {
                throw new TpmException($"PCRs kept changing while quoting ({MaxQuoteAttempts} attempts)");
            }
        }
    }

    /// <summary>Flushes the key from the TPM.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        await _client.FlushContextAsync(Handle, CancellationToken.None).ConfigureAwait(false);
    }

    public override string ToString() => $"attestation key 0x{Handle:X8} ({PublicKey})";
}
