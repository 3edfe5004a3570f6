using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Asterism.Atls.OpenSsl;

/// <summary>
/// The few libssl/libcrypto 3 entry points the aTLS server needs, bound to the same shared libraries .NET itself
/// loads (so an <see cref="SafeEvpPKeyHandle"/> from <see cref="ECDsaOpenSsl"/> is a valid EVP_PKEY here).
/// </summary>
internal static unsafe partial class LibSsl
{
    private const string Ssl = "libssl.so.3";
    private const string Crypto = "libcrypto.so.3";

    public const int Tls13Version = 0x0304;
    public const int CtrlSetMinProtoVersion = 123;
    public const int CtrlSetMaxProtoVersion = 124;
    public const int CtrlSetSessCacheMode = 44;
    public const ulong OpNoTicket = 1UL << 14;
    public const int NameTypeHostName = 0;
    public const int VerifyPeer = 0x01;

    public const int ErrorNone = 0;
    public const int ErrorSsl = 1;
    public const int ErrorWantRead = 2;
    public const int ErrorWantX509Lookup = 4;
    public const int ErrorSyscall = 5;
    public const int ErrorZeroReturn = 6;

    public const int ClientHelloSuccess = 1;
    public const int ClientHelloError = 0;
    public const int AlertNoApplicationProtocol = 120;
    public const uint ExtensionAlpn = 16;

    public const int TlsExtErrOk = 0;
    public const int TlsExtErrAlertFatal = 2;

    [LibraryImport(Ssl)]
    public static partial IntPtr TLS_server_method();

    [LibraryImport(Ssl)]
    public static partial SafeSslContextHandle SSL_CTX_new(IntPtr method);

    [LibraryImport(Ssl)]
    public static partial void SSL_CTX_free(IntPtr ctx);

    [LibraryImport(Ssl)]
    public static partial long SSL_CTX_ctrl(SafeSslContextHandle ctx, int cmd, long larg, IntPtr parg);

    [LibraryImport(Ssl)]
    public static partial ulong SSL_CTX_set_options(SafeSslContextHandle ctx, ulong options);

    [LibraryImport(Ssl)]
    public static partial int SSL_CTX_set_num_tickets(SafeSslContextHandle ctx, nuint tickets);

    [LibraryImport(Ssl)]
    public static partial void SSL_CTX_set_cert_cb(SafeSslContextHandle ctx, delegate* unmanaged<IntPtr, IntPtr, int> callback, IntPtr arg);

    [LibraryImport(Ssl)]
    public static partial void SSL_CTX_set_client_hello_cb(SafeSslContextHandle ctx, delegate* unmanaged<IntPtr, int*, IntPtr, int> callback, IntPtr arg);

    [LibraryImport(Ssl)]
    public static partial int SSL_client_hello_get0_ext(IntPtr ssl, uint type, out byte* data, out nuint length);

    [LibraryImport(Ssl)]
    public static partial void SSL_CTX_set_alpn_select_cb(SafeSslContextHandle ctx, delegate* unmanaged<IntPtr, byte**, byte*, byte*, uint, IntPtr, int> callback, IntPtr arg);

    [LibraryImport(Ssl)]
    public static partial void SSL_set_cert_cb(SafeSslHandle ssl, delegate* unmanaged<IntPtr, IntPtr, int> callback, IntPtr arg);

    [LibraryImport(Ssl)]
    public static partial void SSL_set_verify(SafeSslHandle ssl, int mode, delegate* unmanaged<int, IntPtr, int> callback);

    /// <summary>Takes ownership of the STACK_OF(X509_NAME): the names sent in a TLS 1.3 CertificateRequest.</summary>
    [LibraryImport(Ssl)]
    public static partial void SSL_set_client_CA_list(SafeSslHandle ssl, IntPtr names);

    [LibraryImport(Ssl)]
    public static partial IntPtr SSL_get1_peer_certificate(SafeSslHandle ssl);

    [LibraryImport(Ssl)]
    public static partial SafeSslHandle SSL_new(SafeSslContextHandle ctx);

    [LibraryImport(Ssl)]
    public static partial void SSL_free(IntPtr ssl);

    [LibraryImport(Ssl)]
    public static partial void SSL_set_bio(SafeSslHandle ssl, IntPtr readBio, IntPtr writeBio);

    [LibraryImport(Ssl)]
    public static partial void SSL_set_accept_state(SafeSslHandle ssl);

    [LibraryImport(Ssl)]
    public static partial int SSL_do_handshake(SafeSslHandle ssl);

    [LibraryImport(Ssl)]
    public static partial int SSL_get_error(SafeSslHandle ssl, int ret);

    [LibraryImport(Ssl)]
    public static partial int SSL_read_ex(SafeSslHandle ssl, byte* buffer, nuint count, out nuint read);

    [LibraryImport(Ssl)]
    public static partial int SSL_write_ex(SafeSslHandle ssl, byte* buffer, nuint count, out nuint written);

    [LibraryImport(Ssl)]
    public static partial int SSL_shutdown(SafeSslHandle ssl);

    [LibraryImport(Ssl)]
    public static partial IntPtr SSL_get_servername(SafeSslHandle ssl, int type);

    [LibraryImport(Ssl)]
    public static partial IntPtr SSL_get_certificate(IntPtr ssl);

    [LibraryImport(Ssl)]
    public static partial int SSL_use_certificate(SafeSslHandle ssl, SafeX509Handle certificate);

    [LibraryImport(Ssl)]
    public static partial int SSL_use_PrivateKey(SafeSslHandle ssl, SafeEvpPKeyHandle key);

    [LibraryImport(Ssl)]
    public static partial IntPtr SSL_get_current_cipher(SafeSslHandle ssl);

    [LibraryImport(Ssl)]
    public static partial uint SSL_CIPHER_get_protocol_id(IntPtr cipher);

    [LibraryImport(Ssl)]
    public static partial void SSL_get0_alpn_selected(SafeSslHandle ssl, out byte* data, out uint length);

    [LibraryImport(Crypto)]
    public static partial IntPtr BIO_s_mem();

    [LibraryImport(Crypto)]
    public static partial IntPtr BIO_new(IntPtr method);

    [LibraryImport(Crypto)]
    public static partial int BIO_free(IntPtr bio);

    [LibraryImport(Crypto)]
    public static partial int BIO_write(IntPtr bio, byte* data, int length);

    [LibraryImport(Crypto)]
    public static partial int BIO_read(IntPtr bio, byte* data, int length);

    [LibraryImport(Crypto)]
    public static partial nuint BIO_ctrl_pending(IntPtr bio);

    [LibraryImport(Crypto)]
    public static partial SafeX509Handle d2i_X509(IntPtr reuse, ref byte* data, nint length);

    [LibraryImport(Crypto)]
    public static partial void X509_free(IntPtr certificate);

    [LibraryImport(Crypto)]
    public static partial int i2d_X509(IntPtr certificate, byte** output);

    [LibraryImport(Crypto)]
    public static partial IntPtr d2i_X509_NAME(IntPtr reuse, ref byte* data, nint length);

    [LibraryImport(Crypto)]
    public static partial void X509_NAME_free(IntPtr name);

    [LibraryImport(Crypto)]
    public static partial IntPtr OPENSSL_sk_new_null();

    [LibraryImport(Crypto)]
    public static partial int OPENSSL_sk_push(IntPtr stack, IntPtr item);

    [LibraryImport(Crypto)]
    public static partial void OPENSSL_sk_free(IntPtr stack);

    [LibraryImport(Crypto)]
    public static partial ulong OpenSSL_version_num();

    [LibraryImport(Crypto)]
    public static partial ulong ERR_get_error();

    [LibraryImport(Crypto)]
    public static partial void ERR_clear_error();

    [LibraryImport(Crypto)]
    public static partial void ERR_error_string_n(ulong error, byte* buffer, nuint length);

    /// <summary>Pops this thread's OpenSSL error queue into one line (OpenSSL's own texts: no key material).</summary>
    public static string DrainErrors()
    {
        var text = new StringBuilder();
        Span<byte> buffer = stackalloc byte[256];
        for (var error = ERR_get_error(); error != 0; error = ERR_get_error())
        {
            fixed (byte* p = buffer)
            {
                ERR_error_string_n(error, p, (nuint)buffer.Length);
            }
            if (text.Length > 0)
            {
                text.Append("; ");
            }
            text.Append(Encoding.ASCII.GetString(buffer[..buffer.IndexOf((byte)0)]));
        }
        return text.Length == 0 ? "no OpenSSL error recorded" : text.ToString();
    }
}

internal sealed class SafeSslContextHandle : SafeHandleZeroOrMinusOneIsInvalid
{
    public SafeSslContextHandle()
        : base(ownsHandle: true)
    {
    }

    protected override bool ReleaseHandle()
    {
        LibSsl.SSL_CTX_free(handle);
        return true;
    }
}

internal sealed class SafeSslHandle : SafeHandleZeroOrMinusOneIsInvalid
{
    public SafeSslHandle()
        : base(ownsHandle: true)
    {
    }

    /// <summary>SSL_free also frees the two memory BIOs handed over with SSL_set_bio.</summary>
    protected override bool ReleaseHandle()
    {
        LibSsl.SSL_free(handle);
        return true;
    }
}

internal sealed class SafeX509Handle : SafeHandleZeroOrMinusOneIsInvalid
{
    public SafeX509Handle()
        : base(ownsHandle: true)
    {
    }

    protected override bool ReleaseHandle()
    {
        LibSsl.X509_free(handle);
        return true;
    }
}
