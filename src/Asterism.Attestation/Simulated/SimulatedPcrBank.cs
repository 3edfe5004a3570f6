using System.Security.Cryptography;

namespace Asterism.Attestation.Simulated;

/// <summary>
/// An in-memory bank of 24 SHA-256 PCRs with TPM 2.0 extend semantics. Every process starts with all PCRs zero,
/// as a TPM does after a reset; the local provider's measured boot hands the new process its digests to extend.
/// </summary>
public sealed class SimulatedPcrBank : IPcrBank
{
    public const int Count = 24;
    public const int DigestLength = 32;

    private readonly byte[][] _pcrs;
    private readonly Lock _lock = new();

    public SimulatedPcrBank()
    {
        _pcrs = new byte[Count][];
        for (var i = 0; i < Count; i++)
        {
            _pcrs[i] = new byte[DigestLength];
        }
    }

    public void Extend(int index, ReadOnlySpan<byte> digest)
    {
        CheckIndex(index);
        if (digest.Length != DigestLength)
        {
            throw new ArgumentException($"a SHA-256 PCR is extended with a {DigestLength}-byte digest, got {digest.Length}", nameof(digest));
        }
        Span<byte> buffer = stackalloc byte[2 * DigestLength];
        lock (_lock)
        {
            _pcrs[index].CopyTo(buffer);
            digest.CopyTo(buffer[DigestLength..]);
            SHA256.HashData(buffer, _pcrs[index]);
        }
    }

    public void MeasureEvent(int index, ReadOnlySpan<byte> data)
    {
        Span<byte> digest = stackalloc byte[DigestLength];
        SHA256.HashData(data, digest);
        Extend(index, digest);
    }

    public byte[] Read(int index)
    {
        CheckIndex(index);
        lock (_lock)
        {
            return (byte[])_pcrs[index].Clone();
        }
    }

    /// <summary>A consistent copy of all 24 PCRs.</summary>
    public byte[][] ReadAll()
    {
        lock (_lock)
        {
            return [.. _pcrs.Select(p => (byte[])p.Clone())];
        }
    }

    public ValueTask ExtendAsync(int index, ReadOnlyMemory<byte> digest, CancellationToken cancellationToken)
    {
        Extend(index, digest.Span);
        return ValueTask.CompletedTask;
    }

    public ValueTask MeasureEventAsync(int index, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        MeasureEvent(index, data.Span);
        return ValueTask.CompletedTask;
    }

    public ValueTask<byte[]> ReadAsync(int index, CancellationToken cancellationToken) => ValueTask.FromResult(Read(index));

    private static void CheckIndex(int index)
    {
        if (index is < 0 or >= Count)
        {
            throw new ArgumentOutOfRangeException(nameof(index), index, $"PCR index must be 0-{Count - 1}");
        }
    }
}
