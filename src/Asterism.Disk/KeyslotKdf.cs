using System.Security.Cryptography;
using Konscious.Security.Cryptography;

namespace Asterism.Disk;

/// <summary>Derives a keyslot's 64-byte area key from a passphrase (PBKDF2-SHA256, Argon2i, Argon2id v1.3).</summary>
internal static class KeyslotKdf
{
    // Counts runs on the calling thread, so tests can prove a refused header ran no KDF and that only the
    // requested keyslot was tried (per thread: tests run in parallel).
    [ThreadStatic]
    private static int _invocations;

    /// <summary>KDF runs on this thread so far.</summary>
    public static int Invocations => _invocations;

    public static void Derive(Luks2Kdf kdf, ReadOnlySpan<byte> passphrase, Span<byte> output)
    {
        _invocations++;
        switch (kdf.Type)
        {
            case "pbkdf2":
                Rfc2898DeriveBytes.Pbkdf2(passphrase, kdf.Salt, output, kdf.Iterations, HashAlgorithmName.SHA256);
                break;
            case "argon2i":
            case "argon2id":
                DeriveArgon2(kdf, passphrase, output);
                break;
            default:
                throw new Luks2HeaderException(Luks2HeaderError.UnsupportedKdf, "unsupported KDF");
        }
    }

    /// <summary>
    /// Apart from <see cref="Derive"/> and never inlined: preparing a method loads the assemblies its body names, and
    /// the PBKDF2 slots of machine-generated keys (a node unlocking its disk while the operator waits) need not load
    /// and initialise the Argon2 library.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void DeriveArgon2(Luks2Kdf kdf, ReadOnlySpan<byte> passphrase, Span<byte> output)
    {
        var password = passphrase.ToArray();
        try
        {
            using Argon2 argon = kdf.Type == "argon2id" ? new Argon2id(password) : new Argon2i(password);
            argon.Salt = kdf.Salt;
            argon.Iterations = kdf.Iterations;
            argon.MemorySize = kdf.MemoryKiB;
            argon.DegreeOfParallelism = kdf.Parallelism;
            var derived = argon.GetBytes(output.Length);
            derived.CopyTo(output);
            CryptographicOperations.ZeroMemory(derived);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(password);
        }
    }
}
