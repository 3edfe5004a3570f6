using System.Security.Cryptography;

namespace Asterism.Tpm;

/// <summary>
/// The TPM's SHA-256 PCR bank with the semantics of Asterism.Attestation's IPcrBank (the adapter lives there, so
/// this project does not depend on Attestation): extend with a digest, measure an event, read one PCR.
/// </summary>
public sealed class TpmPcrs
{
    private readonly TpmClient _client;

    public TpmPcrs(TpmClient client)
    {
        ArgumentNullException.ThrowIfNull(client);
        _client = client;
    }

    /// <summary>PCR[i] = SHA-256(PCR[i] ‖ digest), digest 32 bytes (TPM2_PCR_Extend).</summary>
    public Task ExtendAsync(int index, ReadOnlyMemory<byte> digest, CancellationToken cancellationToken) =>
        _client.PcrExtendAsync(index, digest, cancellationToken);

    /// <summary>
    /// PCR[i] = SHA-256(PCR[i] ‖ SHA-256(data)). Data up to 1024 bytes goes through TPM2_PCR_Event (which extends
    /// every active bank); longer data is hashed here and extended, which gives the same SHA-256 value.
    /// </summary>
    public async Task MeasureEventAsync(int index, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (data.Length <= TpmConst.MaxEventData)
        {
            var reported = await _client.PcrEventAsync(index, data, cancellationToken).ConfigureAwait(false);
            var expected = SHA256.HashData(data.Span);
            if (!CryptographicOperations.FixedTimeEquals(reported, expected))
            {
                throw new TpmException("the TPM reported a different event digest than SHA-256 of the data");
            }
            return;
        }
        await _client.PcrExtendAsync(index, SHA256.HashData(data.Span), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The 32-byte SHA-256 value of PCR[index].</summary>
    public async Task<byte[]> ReadAsync(int index, CancellationToken cancellationToken)
    {
        var values = await _client.PcrReadAsync([index], cancellationToken).ConfigureAwait(false);
        return values[index];
    }
}
