using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Asterism.Atls.OpenSsl;

/// <summary>
/// One OpenSSL SSL_CTX shared by every connection of an aTLS server endpoint: TLS 1.3 only, no session tickets and
/// no session cache (a resumed session would carry no fresh attested certificate), ALPN h2 only. It holds no
/// certificate: each connection gets its own in <see cref="TlsServerStream.HandshakeAsync"/>, which is why .NET's
/// SslStream (one SSL_CTX, one X509 chain build and one X509Certificate2 per certificate) is not used here.
/// </summary>
internal sealed unsafe class TlsServerContext
{
    private readonly SafeSslContextHandle _context;

    public TlsServerContext()
    {
        // Keys made by .NET (ECDsaOpenSsl) are handed to this library as EVP_PKEY pointers: only sound if both are
        // the very same OpenSSL.
        var ours = (long)LibSsl.OpenSSL_version_num();
        if (ours != SafeEvpPKeyHandle.OpenSslVersion)
        {
            throw new CryptographicException($"aTLS: .NET uses OpenSSL 0x{SafeEvpPKeyHandle.OpenSslVersion:x} but libcrypto.so.3 is 0x{ours:x}; the aTLS server needs them to be the same library");
        }
        LibSsl.ERR_clear_error();
        _context = LibSsl.SSL_CTX_new(LibSsl.TLS_server_method());
        if (_context.IsInvalid)
        {
            throw new CryptographicException("aTLS: OpenSSL could not create a TLS context: " + LibSsl.DrainErrors());
        }
        try
        {
            if (LibSsl.SSL_CTX_ctrl(_context, LibSsl.CtrlSetMinProtoVersion, LibSsl.Tls13Version, IntPtr.Zero) != 1
                || LibSsl.SSL_CTX_ctrl(_context, LibSsl.CtrlSetMaxProtoVersion, LibSsl.Tls13Version, IntPtr.Zero) != 1
                || LibSsl.SSL_CTX_set_num_tickets(_context, 0) != 1)
            {
                throw new CryptographicException("aTLS: OpenSSL refused the TLS 1.3-only settings: " + LibSsl.DrainErrors());
            }
            // num_tickets = 0 is what stops TLS 1.3 tickets; NO_TICKET (stateless tickets) and no session cache
            // make sure no other resumption path exists.
            LibSsl.SSL_CTX_set_options(_context, LibSsl.OpNoTicket);
            LibSsl.SSL_CTX_ctrl(_context, LibSsl.CtrlSetSessCacheMode, 0, IntPtr.Zero);
            LibSsl.SSL_CTX_set_client_hello_cb(_context, &RequireAlpn, IntPtr.Zero);
            LibSsl.SSL_CTX_set_cert_cb(_context, &CertificateCallback, IntPtr.Zero);
            LibSsl.SSL_CTX_set_alpn_select_cb(_context, &SelectHttp2, IntPtr.Zero);
        }
        catch
        {
            _context.Dispose();
            throw;
        }
    }

    public SafeSslHandle NewConnection()
    {
        LibSsl.ERR_clear_error();
        var ssl = LibSsl.SSL_new(_context);
        if (ssl.IsInvalid)
        {
            ssl.Dispose();
            throw new CryptographicException("aTLS: OpenSSL could not create a TLS connection: " + LibSsl.DrainErrors());
        }
        return ssl;
    }

    /// <summary>
    /// Called once the ClientHello (with its server name) is parsed. Without a certificate yet it asks OpenSSL to
    /// pause (-1: SSL_ERROR_WANT_X509_LOOKUP) so the attestation can run asynchronously outside this callback; the
    /// handshake is resumed once the certificate is installed.
    /// </summary>
    [UnmanagedCallersOnly]
    private static int CertificateCallback(IntPtr ssl, IntPtr arg) => LibSsl.SSL_get_certificate(ssl) != IntPtr.Zero ? 1 : -1;

    /// <summary>
    /// First look at a ClientHello: one without ALPN is refused (no_application_protocol) before the connection costs
    /// an attestation. Whether the list holds "h2" is <see cref="SelectHttp2"/>'s to decide.
    /// </summary>
    [UnmanagedCallersOnly]
    private static int RequireAlpn(IntPtr ssl, int* alert, IntPtr arg)
    {
        if (LibSsl.SSL_client_hello_get0_ext(ssl, LibSsl.ExtensionAlpn, out _, out _) == 1)
        {
            return LibSsl.ClientHelloSuccess;
        }
        *alert = LibSsl.AlertNoApplicationProtocol;
        return LibSsl.ClientHelloError;
    }

    /// <summary>
    /// Client certificates are self-signed and chain to nothing: the attestation document, checked after the
    /// handshake and before any request is read, decides. OpenSSL still checks the CertificateVerify (key possession).
    /// </summary>
    [UnmanagedCallersOnly]
    internal static int AcceptAnyCertificate(int preverified, IntPtr storeContext) => 1;

    /// <summary>Installed on a refused connection: fails the handshake with an alert instead of a silent close.</summary>
    [UnmanagedCallersOnly]
    internal static int RefuseCallback(IntPtr ssl, IntPtr arg) => 0;

    /// <summary>
    /// Picks "h2" from the client's ALPN list (length-prefixed names); a list without it fails the handshake. A client
    /// that sends no ALPN at all is refused earlier, by <see cref="RequireAlpn"/>.
    /// </summary>
    [UnmanagedCallersOnly]
    private static int SelectHttp2(IntPtr ssl, byte** selected, byte* selectedLength, byte* offered, uint offeredLength, IntPtr arg)
    {
        uint i = 0;
        while (i < offeredLength)
        {
            uint length = offered[i];
            if (length == 0 || i + 1 + length > offeredLength)
            {
                break;
            }
            if (length == 2 && offered[i + 1] == (byte)'h' && offered[i + 2] == (byte)'2')
            {
                *selected = offered + i + 1;
                *selectedLength = 2;
                return LibSsl.TlsExtErrOk;
            }
            i += 1 + length;
        }
        return LibSsl.TlsExtErrAlertFatal;
    }
}
