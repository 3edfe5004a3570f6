using System.IO.Pipelines;
using System.Runtime.InteropServices;
using Asterism.Atls.OpenSsl;

namespace Asterism.Atls.Tests;

/// <summary>
/// A TLS 1.3 client run by OpenSSL over memory BIOs, for what .NET's SslStream cannot do (send KeyUpdates). It uses
/// the production bindings (<see cref="LibSsl"/>) where client and server share a call.
/// Its records go to <c>toServer</c>; what the server sends is only read when <see cref="Receive"/> is called.
/// </summary>
internal sealed partial class OpenSslTestClient : IDisposable
{
    private const string Ssl = "libssl.so.3";
    private const int CtrlSetTlsExtHostName = 55;

    private readonly SafeSslContextHandle _context;
    private readonly SafeSslHandle _ssl;
    private readonly IntPtr _input;
    private readonly IntPtr _output;
    private readonly PipeWriter _toServer;
    private readonly PipeReader _fromServer;

    public unsafe OpenSslTestClient(string serverName, PipeWriter toServer, PipeReader fromServer)
    {
        _toServer = toServer;
        _fromServer = fromServer;
        _context = LibSsl.SSL_CTX_new(TLS_client_method());
        _ssl = LibSsl.SSL_new(_context);
        _input = LibSsl.BIO_new(LibSsl.BIO_s_mem());
        _output = LibSsl.BIO_new(LibSsl.BIO_s_mem());
        LibSsl.SSL_set_bio(_ssl, _input, _output);
        SSL_set_connect_state(_ssl);
        var name = Marshal.StringToHGlobalAnsi(serverName);
        try
        {
            SSL_ctrl(_ssl, CtrlSetTlsExtHostName, 0, name);
        }
        finally
        {
            Marshal.FreeHGlobal(name);
        }
        byte[] alpn = [2, (byte)'h', (byte)'2'];
        fixed (byte* p = alpn)
        {
            SSL_set_alpn_protos(_ssl, p, (uint)alpn.Length);
        }
    }

    public bool HandshakeDone => SSL_is_init_finished(_ssl) == 1;

    /// <summary>Runs the client's handshake step and sends what it produced.</summary>
    public async Task StepAsync()
    {
        LibSsl.SSL_do_handshake(_ssl);
        await SendAsync();
    }

    /// <summary>Queues a KeyUpdate asking the server to update its keys too (so it must answer).</summary>
    public void RequestKeyUpdate()
    {
        if (SSL_key_update(_ssl, 1) != 1 || LibSsl.SSL_do_handshake(_ssl) != 1)
        {
            throw new InvalidOperationException("client KeyUpdate failed");
        }
    }

    /// <summary>Moves the client's pending records into the pipe to the server (waits while the server reads nothing).</summary>
    public async Task SendAsync()
    {
        var buffer = new byte[65536];
        int n;
        while ((n = Read(buffer)) > 0)
        {
            await _toServer.WriteAsync(buffer.AsMemory(0, n));
        }
    }

    /// <summary>Feeds everything the server sent so far into the client's OpenSSL; returns the byte count.</summary>
    public unsafe long Receive()
    {
        long total = 0;
        while (_fromServer.TryRead(out var result) && !result.Buffer.IsEmpty)
        {
            foreach (var segment in result.Buffer)
            {
                fixed (byte* p = segment.Span)
                {
                    LibSsl.BIO_write(_input, p, segment.Length);
                }
                total += segment.Length;
            }
            _fromServer.AdvanceTo(result.Buffer.End);
        }
        return total;
    }

    public void Dispose()
    {
        _ssl.Dispose();
        _context.Dispose();
    }

    private unsafe int Read(byte[] buffer)
    {
        fixed (byte* p = buffer)
        {
            return LibSsl.BIO_read(_output, p, buffer.Length);
        }
    }

    [LibraryImport(Ssl)]
    private static partial IntPtr TLS_client_method();

    [LibraryImport(Ssl)]
    private static partial void SSL_set_connect_state(SafeSslHandle ssl);

    [LibraryImport(Ssl)]
    private static partial long SSL_ctrl(SafeSslHandle ssl, int command, long larg, IntPtr parg);

    [LibraryImport(Ssl)]
    private static unsafe partial int SSL_set_alpn_protos(SafeSslHandle ssl, byte* protocols, uint length);

    [LibraryImport(Ssl)]
    private static partial int SSL_key_update(SafeSslHandle ssl, int type);

    [LibraryImport(Ssl)]
    private static partial int SSL_is_init_finished(SafeSslHandle ssl);
}
