namespace Asterism.Tpm.Tests;

/// <summary>Passes commands to a real transport and records each command/response pair.</summary>
public sealed class RecordingTransport(ITpmTransport inner) : ITpmTransport
{
    public List<(byte[] Command, byte[] Response)> Exchanges { get; } = [];

    public async ValueTask<byte[]> TransmitAsync(ReadOnlyMemory<byte> command, CancellationToken cancellationToken)
    {
        var response = await inner.TransmitAsync(command, cancellationToken);
        Exchanges.Add((command.ToArray(), response));
        return response;
    }

    public uint ResponseCodeOf(int exchange) => System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(Exchanges[exchange].Response.AsSpan(6));

    public ValueTask DisposeAsync() => inner.DisposeAsync();
}

/// <summary>Answers from a script of responses, recording the commands it was sent.</summary>
public sealed class ScriptedTransport(params byte[][] responses) : ITpmTransport
{
    private int _next;

    public List<byte[]> Commands { get; } = [];

    public ValueTask<byte[]> TransmitAsync(ReadOnlyMemory<byte> command, CancellationToken cancellationToken)
    {
        Commands.Add(command.ToArray());
        return ValueTask.FromResult(responses[Math.Min(_next++, responses.Length - 1)]);
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    /// <summary>A bare response header with <paramref name="code"/>.</summary>
    public static byte[] Error(uint code) =>
        [0x80, 0x01, 0, 0, 0, 10, (byte)(code >> 24), (byte)(code >> 16), (byte)(code >> 8), (byte)code];
}
