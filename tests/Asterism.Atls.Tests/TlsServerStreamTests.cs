using System.Buffers;
using System.IO.Pipelines;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using Asterism.Atls.OpenSsl;
using Asterism.Tests;

namespace Asterism.Atls.Tests;

/// <summary>
/// <see cref="TlsServerStream"/> on in-memory pipes against a .NET SslStream client, where the transport's
/// backpressure can be controlled: reads must never wait behind a stalled output side.
/// </summary>
public sealed class TlsServerStreamTests : IAsyncDisposable
{
    private static readonly TlsServerContext Context = new();

    private readonly Pipe _toServer = new(new PipeOptions(useSynchronizationContext: false));
    private readonly Pipe _toClient = new(new PipeOptions(pauseWriterThreshold: 4096, resumeWriterThreshold: 2048, useSynchronizationContext: false));
    private readonly ECDsaOpenSsl _key = new(ECCurve.NamedCurves.nistP256);
    private readonly TlsServerStream _server;
    private readonly SslStream _client;

    public TlsServerStreamTests()
    {
        _server = new TlsServerStream(Context, new DuplexPipe(_toServer.Reader, _toClient.Writer));
        _client = new SslStream(new PipeStream(_toClient.Reader, _toServer.Writer));
    }

    public async ValueTask DisposeAsync()
    {
        _client.Dispose();
        _server.Dispose();
        _key.Dispose();
        await _toServer.Writer.CompleteAsync();
        await _toClient.Writer.CompleteAsync();
    }

    [Fact]
    public async Task Read_WhileOutputBackpressured_ReturnsPlaintextAtOnce()
    {
        await HandshakeAsync();
        var big = RandomNumberGenerator.GetBytes(200_000);
        await _server.WriteAsync(big).AsTask().WaitAsync(Poll.Hang);
        var flush = _server.FlushAsync();
        // Not a wait for something to happen: a window in which a wrong flush would complete; a slow machine only
        // makes the check weaker, never fail.
        await Task.Delay(200);
        Assert.False(flush.IsCompleted, "the client reads nothing yet, so the flush must be waiting on the transport");

        await _client.WriteAsync("hello"u8.ToArray());
        await _client.FlushAsync();
        var buffer = new byte[64];
        var read = await _server.ReadAsync(buffer).AsTask().WaitAsync(Poll.Hang);

        Assert.Equal("hello"u8.ToArray(), buffer[..read]);
        var received = new byte[big.Length];
        await _client.ReadExactlyAsync(received).AsTask().WaitAsync(Poll.Hang);
        await flush.WaitAsync(Poll.Hang);
        Assert.Equal(big, received);
    }

    [Fact]
    public async Task Read_ClientClosesWithCloseNotify_ReturnsEndOfStream()
    {
        await HandshakeAsync();

        await _client.ShutdownAsync();
        var read = await _server.ReadAsync(new byte[16]).AsTask().WaitAsync(Poll.Hang);

        Assert.Equal(0, read);
    }

    [Fact]
    public async Task Write_FlushCancelledThenRetried_EachByteArrivesOnce()
    {
        await HandshakeAsync();
        var writer = PipeWriter.Create(_server, new StreamPipeWriterOptions(leaveOpen: true));

        writer.Write("AAAA"u8);
        writer.CancelPendingFlush();
        var first = await writer.FlushAsync();
        writer.Write("BBBB"u8);
        await writer.FlushAsync();
        var received = new byte[8];
        await _client.ReadExactlyAsync(received).AsTask().WaitAsync(Poll.Hang);

        Assert.True(first.IsCanceled);
        Assert.Equal("AAAABBBB"u8.ToArray(), received);
    }

    [Fact]
    public async Task Read_PeerFloodsKeyUpdatesAndReadsNothing_ServerOutputStaysBounded()
    {
        var toServer = new Pipe(new PipeOptions(useSynchronizationContext: false));
        var toClient = new Pipe(new PipeOptions(useSynchronizationContext: false));
        await using var server = new TlsServerStream(Context, new DuplexPipe(toServer.Reader, toClient.Writer));
        using var certificate = AtlsCertificate.Build(_key, null, null, DateTimeOffset.UtcNow);
        var der = certificate.RawData;
        var handshake = server.HandshakeAsync((_, _) => ValueTask.FromResult<TlsCredential?>(TlsCredential.Create(der, _key)), CancellationToken.None);
        using var client = new OpenSslTestClient(AtlsNonce.ToServerName(AtlsNonce.Create()), toServer.Writer, toClient.Reader);
        // Steps the client until its handshake is done; the deadline is a hang detector.
        var deadline = DateTime.UtcNow.Add(Poll.Hang);
        while (!client.HandshakeDone && DateTime.UtcNow < deadline)
        {
            await client.StepAsync();
            await Task.Delay(10);
            client.Receive();
        }
        Assert.True(await handshake.WaitAsync(Poll.Hang));
        var read = server.ReadAsync(new byte[100]).AsTask();

        // 100,000 KeyUpdates ask for ~2.7 MB of answers; the client never reads them.
        var held = false;
        Task sending = Task.CompletedTask;
        for (var i = 0; i < 100_000 && !held; i++)
        {
            client.RequestKeyUpdate();
            if (i % 1000 == 999)
            {
                sending = client.SendAsync();
                // A window for a negative (the send stays blocked): a slow machine can only weaken this check, never fail it.
                held = !await sending.WaitAsync(TimeSpan.FromSeconds(5)).ContinueWith(t => t.IsCompletedSuccessfully);
            }
        }
        var answered = UnreadBytes(toClient.Reader);

        Assert.True(held, "the server kept reading although nobody reads its answers");
        // Transport pipe (pauses the server's flush at 64 KiB) plus OpenSSL's buffer: bounded, not ~2.7 MB.
        Assert.InRange(answered + server.PendingOutput(), 0, 256 * 1024);
        Assert.False(read.IsCompleted);
        // Unblock the client's pending write before the client is disposed.
        toServer.Reader.Complete();
        await Task.WhenAny(sending, Task.Delay(TimeSpan.FromSeconds(5)));
    }

    private static long UnreadBytes(PipeReader reader)
    {
        if (!reader.TryRead(out var result))
        {
            return 0;
        }
        var length = result.Buffer.Length;
        reader.AdvanceTo(result.Buffer.Start);
        return length;
    }

    [Fact]
    public void Credential_TrailingBytesAfterCertificate_Refused()
    {
        using var certificate = AtlsCertificate.Build(_key, null, null, DateTimeOffset.UtcNow);

        var e = Assert.Throws<CryptographicException>(() => TlsCredential.Create([.. certificate.RawData, 0x00], _key));

        Assert.Contains("trailing bytes", e.Message, StringComparison.Ordinal);
    }

    private async Task HandshakeAsync()
    {
        using var certificate = AtlsCertificate.Build(_key, null, null, DateTimeOffset.UtcNow);
        var der = certificate.RawData;
        var server = _server.HandshakeAsync((_, _) => ValueTask.FromResult<TlsCredential?>(TlsCredential.Create(der, _key)), CancellationToken.None);
        await _client.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = AtlsNonce.ToServerName(AtlsNonce.Create()),
            EnabledSslProtocols = SslProtocols.Tls13,
            ApplicationProtocols = [SslApplicationProtocol.Http2],
            RemoteCertificateValidationCallback = (_, c, _, _) => c is not null && c.GetRawCertData().AsSpan().SequenceEqual(der),
        }).WaitAsync(Poll.Hang);
        Assert.True(await server.WaitAsync(Poll.Hang));
        Assert.Equal("h2"u8.ToArray(), _server.ApplicationProtocol.ToArray());
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    /// <summary>The client's side of the in-memory connection as a Stream.</summary>
    private sealed class PipeStream(PipeReader input, PipeWriter output) : Stream
    {
        private readonly Stream _reader = input.AsStream();
        private readonly Stream _writer = output.AsStream();

        public override bool CanRead => true;

        public override bool CanWrite => true;

        public override bool CanSeek => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => _reader.ReadAsync(buffer, cancellationToken);

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await _writer.WriteAsync(buffer, cancellationToken);
            await _writer.FlushAsync(cancellationToken);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => _reader.Read(buffer, offset, count);

        public override void Write(byte[] buffer, int offset, int count)
        {
            _writer.Write(buffer, offset, count);
            _writer.Flush();
        }

        public override void Flush() => _writer.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => _writer.FlushAsync(cancellationToken);

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
