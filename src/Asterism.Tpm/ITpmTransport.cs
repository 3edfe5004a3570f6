namespace Asterism.Tpm;

/// <summary>
/// Moves one TPM command to the TPM and its response back. Implementations are not thread-safe:
/// <see cref="TpmClient"/> serialises calls. Failures are <see cref="TpmException"/>s; after a failure or a
/// cancellation mid-command the transport is broken and keeps throwing.
/// </summary>
public interface ITpmTransport : IAsyncDisposable
{
    ValueTask<byte[]> TransmitAsync(ReadOnlyMemory<byte> command, CancellationToken cancellationToken);
}
