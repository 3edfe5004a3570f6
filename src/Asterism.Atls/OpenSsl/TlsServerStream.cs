using System.Buffers;
using System.IO.Pipelines;
using System.Net.Security;
using System.Runtime.InteropServices;
using System.Security.Authentication;
using System.Security.Cryptography;

namespace Asterism.Atls.OpenSsl;

/// <summary>A certificate and its private key, as OpenSSL objects, for one connection.</summary>
internal sealed class TlsCredential : IDisposable
{
    private TlsCredential(SafeX509Handle certificate, SafeEvpPKeyHandle key)
    {
        Certificate = certificate;
        Key = key;
    }

    public SafeX509Handle Certificate { get; }

    public SafeEvpPKeyHandle Key { get; }

    public static unsafe TlsCredential Create(byte[] certificateDer, ECDsaOpenSsl key)
    {
        ArgumentNullException.ThrowIfNull(certificateDer);
        ArgumentNullException.ThrowIfNull(key);
        SafeX509Handle certificate;
        LibSsl.ERR_clear_error();
        fixed (byte* der = certificateDer)
        {
            var cursor = der;
            certificate = LibSsl.d2i_X509(IntPtr.Zero, ref cursor, certificateDer.Length);
            if (!certificate.IsInvalid && cursor != der + certificateDer.Length)
            {
                certificate.Dispose();
                throw new CryptographicException("aTLS: the connection certificate has trailing bytes");
            }
        }
        if (certificate.IsInvalid)
        {
            certificate.Dispose();
            throw new CryptographicException("aTLS: OpenSSL could not parse the connection certificate: " + LibSsl.DrainErrors());
        }
        return new TlsCredential(certificate, key.DuplicateKeyHandle());
    }

    public void Dispose()
    {
        Certificate.Dispose();
        Key.Dispose();
    }
}

/// <summary>
/// The server side of one TLS 1.3 connection run by OpenSSL over memory BIOs: encrypted bytes come from and go to
/// Kestrel's transport pipe, plaintext is this stream. All OpenSSL calls on the connection are serialized by one
/// lock (an SSL object is not thread-safe; HTTP/2 reads and writes concurrently) that is never held across an
/// await; output records are moved to the transport under a gate so they leave in the order OpenSSL made them.
/// </summary>
internal sealed class TlsServerStream : Stream
{
    private const int MaxOutputChunk = 64 * 1024;

    // Output a read may leave queued before it waits for the transport (KeyUpdate replies pile up otherwise).
    private const int ReadOutputLimit = 16 * 1024;
    private static readonly TimeSpan CloseNotifyTimeout = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan AlertTimeout = TimeSpan.FromSeconds(1);

    private readonly Lock _sync = new();
    private readonly SemaphoreSlim _outputGate = new(1, 1);
    private readonly SafeSslHandle _ssl;
    private readonly IntPtr _input;
    private readonly IntPtr _output;
    private readonly IDuplexPipe _transport;
    private bool _handshakeDone;
    private bool _disposed;

    // Bytes moved into the transport writer but not yet flushed; guarded by _outputGate.
    private bool _unflushed;

    public TlsServerStream(TlsServerContext context, IDuplexPipe transport)
    {
        ArgumentNullException.ThrowIfNull(context);
        _transport = transport ?? throw new ArgumentNullException(nameof(transport));
        _ssl = context.NewConnection();
        _input = LibSsl.BIO_new(LibSsl.BIO_s_mem());
        _output = LibSsl.BIO_new(LibSsl.BIO_s_mem());
        if (_input == IntPtr.Zero || _output == IntPtr.Zero)
        {
            FreeBio(_input);
            FreeBio(_output);
            _ssl.Dispose();
            throw new CryptographicException("aTLS: OpenSSL could not allocate connection buffers: " + LibSsl.DrainErrors());
        }
        LibSsl.SSL_set_bio(_ssl, _input, _output);
        LibSsl.SSL_set_accept_state(_ssl);
    }

    /// <summary>The ALPN protocol agreed in the handshake ("h2"), or empty.</summary>
    public ReadOnlyMemory<byte> ApplicationProtocol { get; private set; }

    /// <summary>The TLS 1.3 cipher suite agreed in the handshake.</summary>
    public TlsCipherSuite? CipherSuite { get; private set; }

    /// <summary>The TLS server name the client sent (the nonce name in aTLS).</summary>
    public string ServerNameSent { get; private set; } = string.Empty;

    /// <summary>
    /// Asks the client for a certificate, naming <paramref name="authorityName"/> (DER X.509 Name) as the only
    /// acceptable CA in the CertificateRequest: the aTLS client reads the server's nonce from it. Before the handshake.
    /// </summary>
    public unsafe void RequestClientCertificate(ReadOnlySpan<byte> authorityName)
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LibSsl.ERR_clear_error();
            var names = LibSsl.OPENSSL_sk_new_null();
            IntPtr name;
            fixed (byte* der = authorityName)
            {
                var cursor = der;
                name = LibSsl.d2i_X509_NAME(IntPtr.Zero, ref cursor, authorityName.Length);
            }
            if (names == IntPtr.Zero || name == IntPtr.Zero || LibSsl.OPENSSL_sk_push(names, name) <= 0)
            {
                if (name != IntPtr.Zero)
                {
                    LibSsl.X509_NAME_free(name);
                }
                if (names != IntPtr.Zero)
                {
                    LibSsl.OPENSSL_sk_free(names);
                }
                throw new CryptographicException("aTLS: OpenSSL could not set the certificate request: " + LibSsl.DrainErrors());
            }
            LibSsl.SSL_set_client_CA_list(_ssl, names);
            LibSsl.SSL_set_verify(_ssl, LibSsl.VerifyPeer, &TlsServerContext.AcceptAnyCertificate);
        }
    }

    /// <summary>The client's certificate (DER) after the handshake, or null when it sent none.</summary>
    public unsafe byte[]? PeerCertificate()
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var certificate = LibSsl.SSL_get1_peer_certificate(_ssl);
            if (certificate == IntPtr.Zero)
            {
                return null;
            }
            try
            {
                var length = LibSsl.i2d_X509(certificate, null);
                if (length <= 0)
                {
                    return null;
                }
                var der = new byte[length];
                fixed (byte* p = der)
                {
                    var cursor = p;
                    LibSsl.i2d_X509(certificate, &cursor);
                }
                return der;
            }
            finally
            {
                LibSsl.X509_free(certificate);
            }
        }
    }

    /// <summary>
    /// Runs the handshake. When OpenSSL has parsed the ClientHello, <paramref name="credentials"/> gets the TLS
    /// server name and returns the connection's certificate, or null to refuse (the client gets an alert).
    /// Returns false when refused; throws <see cref="AuthenticationException"/> or <see cref="IOException"/> when
    /// the handshake fails otherwise.
    /// </summary>
    public async Task<bool> HandshakeAsync(Func<string?, CancellationToken, ValueTask<TlsCredential?>> credentials, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(credentials);
        var refused = false;
        string? attestedName = null;
        while (true)
        {
            var step = HandshakeStep();
            await FlushOutputAsync(cancellationToken).ConfigureAwait(false);
            if (step.Result == 1)
            {
                // After a HelloRetryRequest the second ClientHello could name another server; the certificate was
                // made for the first name, so both must agree.
                if (!string.Equals(ServerName(), attestedName, StringComparison.Ordinal))
                {
                    throw new AuthenticationException("aTLS: the TLS server name changed during the handshake");
                }
                _handshakeDone = true;
                ApplicationProtocol = SelectedProtocol();
                CipherSuite = SelectedCipherSuite();
                ServerNameSent = attestedName ?? string.Empty;
                return true;
            }
            switch (step.Error)
            {
                case LibSsl.ErrorWantRead:
                    if (!await FillInputAsync(cancellationToken).ConfigureAwait(false))
                    {
                        throw new IOException("aTLS: the client closed the connection during the TLS handshake");
                    }
                    break;
                case LibSsl.ErrorWantX509Lookup:
                    attestedName = ServerName();
                    using (var credential = await credentials(attestedName, cancellationToken).ConfigureAwait(false))
                    {
                        if (credential is null)
                        {
                            refused = true;
                            Refuse();
                        }
                        else
                        {
                            Install(credential);
                        }
                    }
                    break;
                case LibSsl.ErrorSsl when refused:
                    return false;
                default:
                    throw new AuthenticationException("aTLS: TLS handshake failed: " + step.Detail);
            }
        }
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ThrowUnlessHandshakeDone();
        if (buffer.IsEmpty)
        {
            return 0;
        }
        while (true)
        {
            // A successful read returns at once: its plaintext must never wait behind (or be lost to a cancelled
            // wait for) the output side.
            var step = Decrypt(buffer);
            if (step.Result == 1)
            {
                return step.Count;
            }
            switch (step.Error)
            {
                case LibSsl.ErrorZeroReturn:
                    return 0;
                case LibSsl.ErrorWantRead:
                    // Reads make output too: OpenSSL answers each KeyUpdate(update_requested) at once. No plaintext
                    // is held here, so this may wait on the transport; a peer that sends only KeyUpdates and reads
                    // nothing is thereby held back by the transport's backpressure instead of growing our buffer.
                    if (PendingOutput() > ReadOutputLimit)
                    {
                        await FlushOutputAsync(cancellationToken).ConfigureAwait(false);
                    }
                    if (!await FillInputAsync(cancellationToken).ConfigureAwait(false))
                    {
                        return 0;
                    }
                    break;
                default:
                    // Best effort: the read error is what the caller needs.
                    await TryFlushOutputAsync(AlertTimeout).ConfigureAwait(false);
                    throw new IOException("aTLS: TLS read failed: " + step.Detail);
            }
        }
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ThrowUnlessHandshakeDone();
        if (buffer.IsEmpty)
        {
            return;
        }
        cancellationToken.ThrowIfCancellationRequested();
        Encrypt(buffer.Span);
        // From here the data is consumed: reporting cancellation would make the caller write it again.
        await _outputGate.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            MoveOutput();
        }
        finally
        {
            _outputGate.Release();
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <summary>Sends close_notify (best effort) and frees the OpenSSL connection.</summary>
    public override async ValueTask DisposeAsync()
    {
        var notify = false;
        lock (_sync)
        {
            if (!_disposed && _handshakeDone)
            {
                LibSsl.ERR_clear_error();
                LibSsl.SSL_shutdown(_ssl);
                LibSsl.ERR_clear_error();
                notify = true;
            }
        }
        if (notify)
        {
            await TryFlushOutputAsync(CloseNotifyTimeout).ConfigureAwait(false);
        }
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            lock (_sync)
            {
                if (_disposed)
                {
                    return;
                }
                _disposed = true;
                _ssl.Dispose();
            }
            // _outputGate is not disposed: a flush may still hold it, and it never allocates a wait handle.
        }
        base.Dispose(disposing);
    }

    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    /// <summary>Blocking flush (see <see cref="Write(ReadOnlySpan{byte})"/>).</summary>
    public override void Flush()
    {
        _outputGate.Wait();
        try
        {
            MoveOutput();
            if (_unflushed)
            {
                _transport.Output.FlushAsync().AsTask().GetAwaiter().GetResult();
                _unflushed = false;
            }
        }
        finally
        {
            _outputGate.Release();
        }
    }

    /// <summary>Writes only queue records on the transport; this sends them (a PipeWriter over this stream calls it once per flush).</summary>
    public override Task FlushAsync(CancellationToken cancellationToken) => FlushOutputAsync(cancellationToken).AsTask();

    /// <summary>Blocking read; Kestrel only reads asynchronously.</summary>
    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    /// <summary>
    /// Blocking write: a PipeWriter over this stream that is completed with Complete() (not CompleteAsync, which the
    /// middleware uses) writes and flushes what is still buffered synchronously, so this path must deliver, not throw.
    /// </summary>
    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        ThrowUnlessHandshakeDone();
        if (buffer.IsEmpty)
        {
            return;
        }
        Encrypt(buffer);
        _outputGate.Wait();
        try
        {
            MoveOutput();
        }
        finally
        {
            _outputGate.Release();
        }
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    /// <summary>SSL_read/SSL_write would silently run a handshake themselves; plaintext only flows after ours.</summary>
    private void ThrowUnlessHandshakeDone()
    {
        if (!_handshakeDone)
        {
            throw new InvalidOperationException("aTLS: the TLS handshake has not completed");
        }
    }

    private readonly record struct StepResult(int Result, int Error, int Count, string Detail);

    private StepResult HandshakeStep()
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LibSsl.ERR_clear_error();
            return Outcome(LibSsl.SSL_do_handshake(_ssl), 0);
        }
    }

    private unsafe StepResult Decrypt(Memory<byte> buffer)
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LibSsl.ERR_clear_error();
            int result;
            nuint read;
            using (var pin = buffer.Pin())
            {
                result = LibSsl.SSL_read_ex(_ssl, (byte*)pin.Pointer, (nuint)buffer.Length, out read);
            }
            return Outcome(result, (int)read);
        }
    }

    private unsafe void Encrypt(ReadOnlySpan<byte> buffer)
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LibSsl.ERR_clear_error();
            int result;
            fixed (byte* data = buffer)
            {
                // Memory BIOs never block, so a write is either whole or an error.
                result = LibSsl.SSL_write_ex(_ssl, data, (nuint)buffer.Length, out _);
            }
            if (result != 1)
            {
                throw new IOException("aTLS: TLS write failed: " + Outcome(result, 0).Detail);
            }
        }
    }

    /// <summary>Must run under <see cref="_sync"/>, right after the OpenSSL call (the error queue is per thread).</summary>
    private StepResult Outcome(int result, int count)
    {
        var error = result == 1 ? LibSsl.ErrorNone : LibSsl.SSL_get_error(_ssl, result);
        var detail = error is LibSsl.ErrorSsl or LibSsl.ErrorSyscall ? LibSsl.DrainErrors() : string.Empty;
        LibSsl.ERR_clear_error();
        return new StepResult(result, error, count, detail);
    }

    private string? ServerName()
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            // OpenSSL keeps the name as a NUL-terminated string of at most 255 bytes (longer ones fail the handshake).
            return Marshal.PtrToStringAnsi(LibSsl.SSL_get_servername(_ssl, LibSsl.NameTypeHostName));
        }
    }

    private void Install(TlsCredential credential)
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LibSsl.ERR_clear_error();
            if (LibSsl.SSL_use_certificate(_ssl, credential.Certificate) != 1 || LibSsl.SSL_use_PrivateKey(_ssl, credential.Key) != 1)
            {
                // Our own certificate or key: a server-side fault, not the client's (logged at Warning).
                throw new CryptographicException("aTLS: OpenSSL refused the connection certificate: " + LibSsl.DrainErrors());
            }
        }
    }

    private unsafe void Refuse()
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            LibSsl.SSL_set_cert_cb(_ssl, &TlsServerContext.RefuseCallback, IntPtr.Zero);
        }
    }

    private unsafe ReadOnlyMemory<byte> SelectedProtocol()
    {
        lock (_sync)
        {
            LibSsl.SSL_get0_alpn_selected(_ssl, out var data, out var length);
            return data == null ? ReadOnlyMemory<byte>.Empty : new ReadOnlySpan<byte>(data, (int)length).ToArray();
        }
    }

    private TlsCipherSuite? SelectedCipherSuite()
    {
        lock (_sync)
        {
            var cipher = LibSsl.SSL_get_current_cipher(_ssl);
            // The low 16 bits are the IANA code point, which TlsCipherSuite's values are.
            return cipher == IntPtr.Zero ? null : (TlsCipherSuite)(ushort)LibSsl.SSL_CIPHER_get_protocol_id(cipher);
        }
    }

    /// <summary>Moves the next encrypted bytes from the transport into OpenSSL; false at end of stream.</summary>
    private async ValueTask<bool> FillInputAsync(CancellationToken cancellationToken)
    {
        var result = await _transport.Input.ReadAsync(cancellationToken).ConfigureAwait(false);
        var buffer = result.Buffer;
        try
        {
            if (buffer.IsEmpty)
            {
                return !result.IsCompleted;
            }
            Feed(buffer);
            return true;
        }
        finally
        {
            _transport.Input.AdvanceTo(buffer.End);
        }
    }

    private unsafe void Feed(in ReadOnlySequence<byte> received)
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            foreach (var segment in received)
            {
                using var pin = segment.Pin();
                if (LibSsl.BIO_write(_input, (byte*)pin.Pointer, segment.Length) != segment.Length)
                {
                    throw new IOException("aTLS: OpenSSL could not buffer received data");
                }
            }
        }
    }

    /// <summary>
    /// Moves everything OpenSSL has produced to the transport, in order, and flushes it. A cancelled flush leaves
    /// <see cref="_unflushed"/> set, so the next one sends those bytes.
    /// </summary>
    private async ValueTask FlushOutputAsync(CancellationToken cancellationToken)
    {
        await _outputGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            MoveOutput();
            if (_unflushed)
            {
                await _transport.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
                _unflushed = false;
            }
        }
        finally
        {
            _outputGate.Release();
        }
    }

    /// <summary>
    /// Sends what OpenSSL queued (an alert, close_notify) if the transport takes it within <paramref name="limit"/>;
    /// a peer that stopped reading or a transport Kestrel already closed gets nothing more.
    /// </summary>
    private async ValueTask TryFlushOutputAsync(TimeSpan limit)
    {
        using var timeout = new CancellationTokenSource(limit);
        try
        {
            await FlushOutputAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or ObjectDisposedException or OperationCanceledException)
        {
        }
    }

    /// <summary>Under <see cref="_outputGate"/>: moves OpenSSL's output into the transport writer.</summary>
    private void MoveOutput()
    {
        if (DrainOutput())
        {
            _unflushed = true;
        }
    }

    private unsafe bool DrainOutput()
    {
        lock (_sync)
        {
            if (_disposed)
            {
                return false;
            }
            var moved = false;
            for (var pending = LibSsl.BIO_ctrl_pending(_output); pending > 0; pending = LibSsl.BIO_ctrl_pending(_output))
            {
                var chunk = (int)Math.Min(pending, MaxOutputChunk);
                var span = _transport.Output.GetSpan(chunk);
                int read;
                fixed (byte* destination = span)
                {
                    read = LibSsl.BIO_read(_output, destination, Math.Min(span.Length, chunk));
                }
                if (read <= 0)
                {
                    break;
                }
                _transport.Output.Advance(read);
                moved = true;
            }
            return moved;
        }
    }

    /// <summary>Bytes OpenSSL has produced that are not yet in the transport writer.</summary>
    internal long PendingOutput()
    {
        lock (_sync)
        {
            return _disposed ? 0 : (long)LibSsl.BIO_ctrl_pending(_output);
        }
    }

    private static void FreeBio(IntPtr bio)
    {
        if (bio != IntPtr.Zero)
        {
            LibSsl.BIO_free(bio);
        }
    }
}
