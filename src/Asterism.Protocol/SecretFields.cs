using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Google.Protobuf;

namespace Asterism.Protocol;

/// <summary>
/// Key bytes in protobuf messages without stray copies: outgoing secrets are wrapped (no copy) over a buffer the
/// caller zeroes once the message is serialised, and incoming secret fields are zeroed in place once copied into a
/// key type. <see cref="ByteString"/> is immutable by contract only; these are the two places that may break it.
/// </summary>
public static class SecretFields
{
    /// <summary>A ByteString over <paramref name="owned"/> without copying; the caller zeroes <paramref name="owned"/> after the message was sent.</summary>
    public static ByteString Wrap(byte[] owned) => UnsafeByteOperations.UnsafeWrap(owned);

    /// <summary>Overwrites the bytes of a received (or sent) secret field with zeros.</summary>
    public static void Zero(ByteString field)
    {
        ArgumentNullException.ThrowIfNull(field);
        if (!field.IsEmpty)
        {
            CryptographicOperations.ZeroMemory(MemoryMarshal.AsMemory(field.Memory).Span);
        }
    }

    /// <summary>Zeroes every field of <paramref name="fields"/>.</summary>
    public static void Zero(params ReadOnlySpan<ByteString> fields)
    {
        foreach (var field in fields)
        {
            Zero(field);
        }
    }
}
