using Asterism.Tpm;

namespace Asterism.Attestation.Tpm;

/// <summary><see cref="IPcrBank"/> over a real TPM's SHA-256 bank (swtpm locally, /dev/tpmrm0 on machines).</summary>
public sealed class TpmPcrBank : IPcrBank
{
    private readonly TpmPcrs _pcrs;

    public TpmPcrBank(TpmClient client)
    {
        ArgumentNullException.ThrowIfNull(client);
        _pcrs = new TpmPcrs(client);
    }

    public async ValueTask ExtendAsync(int index, ReadOnlyMemory<byte> digest, CancellationToken cancellationToken) =>
        await _pcrs.ExtendAsync(index, digest, cancellationToken).ConfigureAwait(false);

    public async ValueTask MeasureEventAsync(int index, ReadOnlyMemory<byte> data, CancellationToken cancellationToken) =>
        await _pcrs.MeasureEventAsync(index, data, cancellationToken).ConfigureAwait(false);

    public async ValueTask<byte[]> ReadAsync(int index, CancellationToken cancellationToken) =>
        await _pcrs.ReadAsync(index, cancellationToken).ConfigureAwait(false);
}
