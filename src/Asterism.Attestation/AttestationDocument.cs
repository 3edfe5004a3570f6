using System.Buffers.Binary;
using System.Text;

namespace Asterism.Attestation;

/// <summary>
/// The versioned binary envelope every variant's document travels in. Layout (v2, big-endian):
/// <code>
/// "ASTA" | u8 version=2 | u8 nameLen, variant name (ASCII, 1-32) | u8 userDataLen, userData (0-64)
///        | u8 nonceLen, nonce (0-64) | u16 identityLen, identity certificate (DER, 0-4096)
///        | u32 payloadLen, payload | nothing after
/// </code>
/// The identity certificate names the node and its role and certifies the attestation key (see
/// <see cref="Identities.IdentityAuthority"/>); the payload's signature by that key is what binds it to this document.
/// The whole document is at most <see cref="MaxSize"/> bytes. The envelope itself proves nothing: each
/// variant's payload binds userData and nonce cryptographically (e.g. a signature over SHA-256(userData ‖ nonce)).
/// </summary>
public sealed class AttestationDocument
{
    public const int MaxSize = 64 * 1024;
    public const byte CurrentVersion = 2;
    public const int MaxIdentityLength = Identities.IdentityCertificate.MaxSize;
    public const int MaxVariantNameLength = 32;
    public const int MaxUserDataLength = 64;
    public const int MaxNonceLength = 64;

    private static ReadOnlySpan<byte> Magic => "ASTA"u8;

    public AttestationDocument(string variantName, ReadOnlySpan<byte> userData, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> payload)
        : this(variantName, userData, nonce, [], payload)
    {
    }

    public AttestationDocument(string variantName, ReadOnlySpan<byte> userData, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> identity, ReadOnlySpan<byte> payload)
    {
        ArgumentException.ThrowIfNullOrEmpty(variantName);
        if (variantName.Length > MaxVariantNameLength || !variantName.All(char.IsAscii))
        {
            throw new ArgumentException($"variant name must be 1-{MaxVariantNameLength} ASCII characters", nameof(variantName));
        }
        if (userData.Length > MaxUserDataLength)
        {
            throw new ArgumentException($"user data must be at most {MaxUserDataLength} bytes", nameof(userData));
        }
        if (nonce.Length > MaxNonceLength)
        {
            throw new ArgumentException($"nonce must be at most {MaxNonceLength} bytes", nameof(nonce));
        }
        if (identity.Length > MaxIdentityLength)
        {
            throw new ArgumentException($"identity certificate must be at most {MaxIdentityLength} bytes", nameof(identity));
        }
        if (HeaderSize(variantName.Length, userData.Length, nonce.Length) + identity.Length + payload.Length > MaxSize)
        {
            throw new ArgumentException($"document would exceed {MaxSize} bytes", nameof(payload));
        }
        VariantName = variantName;
        UserData = userData.ToArray();
        Nonce = nonce.ToArray();
        Identity = identity.ToArray();
        Payload = payload.ToArray();
    }

    public string VariantName { get; }
    public byte[] UserData { get; }
    public byte[] Nonce { get; }
    public byte[] Payload { get; }

    /// <summary>DER identity certificate of the attestation key, or empty.</summary>
    public byte[] Identity { get; }

    public byte[] Encode()
    {
        var buffer = new byte[HeaderSize(VariantName.Length, UserData.Length, Nonce.Length) + Identity.Length + Payload.Length];
        var span = buffer.AsSpan();
        Magic.CopyTo(span);
        span[4] = CurrentVersion;
        var pos = 5;
        span[pos++] = (byte)VariantName.Length;
        pos += Encoding.ASCII.GetBytes(VariantName, span[pos..]);
        span[pos++] = (byte)UserData.Length;
        UserData.CopyTo(span[pos..]);
        pos += UserData.Length;
        span[pos++] = (byte)Nonce.Length;
        Nonce.CopyTo(span[pos..]);
        pos += Nonce.Length;
        BinaryPrimitives.WriteUInt16BigEndian(span[pos..], (ushort)Identity.Length);
        pos += 2;
        Identity.CopyTo(span[pos..]);
        pos += Identity.Length;
        BinaryPrimitives.WriteUInt32BigEndian(span[pos..], (uint)Payload.Length);
        pos += 4;
        Payload.CopyTo(span[pos..]);
        return buffer;
    }

    /// <summary>Parses untrusted bytes; on failure returns false and a refusal verdict (Oversized, UnsupportedVersion or Malformed).</summary>
    public static bool TryParse(ReadOnlySpan<byte> bytes, out AttestationDocument document, out AttestationVerdict refusal)
    {
        document = null!;
        refusal = null!;
        if (bytes.Length > MaxSize)
        {
            refusal = AttestationVerdict.Refuse(AttestationFailure.Oversized, $"attestation document of {bytes.Length} bytes exceeds the limit of {MaxSize}");
            return false;
        }
        if (bytes.Length < 5 || !bytes[..4].SequenceEqual(Magic))
        {
            refusal = Malformed("not an attestation document (bad magic)");
            return false;
        }
        if (bytes[4] != CurrentVersion)
        {
            refusal = AttestationVerdict.Refuse(AttestationFailure.UnsupportedVersion, $"unsupported attestation document version {bytes[4]}");
            return false;
        }
        var reader = new BoundedReader(bytes[5..]);
        if (!reader.TryReadU8Prefixed(out var name) || name.Length is 0 or > MaxVariantNameLength || !Ascii.IsValid(name))
        {
            refusal = Malformed("bad variant name");
            return false;
        }
        if (!reader.TryReadU8Prefixed(out var userData) || userData.Length > MaxUserDataLength)
        {
            refusal = Malformed("bad user data field");
            return false;
        }
        if (!reader.TryReadU8Prefixed(out var nonce) || nonce.Length > MaxNonceLength)
        {
            refusal = Malformed("bad nonce field");
            return false;
        }
        if (!reader.TryReadU16Prefixed(out var identity) || identity.Length > MaxIdentityLength)
        {
            refusal = Malformed("bad identity field");
            return false;
        }
        if (!reader.TryReadU32Prefixed(out var payload))
        {
            refusal = Malformed("truncated payload");
            return false;
        }
        if (!reader.AtEnd)
        {
            refusal = Malformed("trailing bytes after payload");
            return false;
        }
        document = new AttestationDocument(Encoding.ASCII.GetString(name), userData, nonce, identity, payload);
        return true;
    }

    private static AttestationVerdict Malformed(string message) =>
        AttestationVerdict.Refuse(AttestationFailure.Malformed, "malformed attestation document: " + message);

    private static int HeaderSize(int nameLength, int userDataLength, int nonceLength) =>
        4 + 1 + 1 + nameLength + 1 + userDataLength + 1 + nonceLength + 2 + 4;
}

/// <summary>A bounds-checked cursor over untrusted bytes; every read reports failure instead of throwing.</summary>
public ref struct BoundedReader(ReadOnlySpan<byte> data)
{
    private ReadOnlySpan<byte> _rest = data;

    public readonly bool AtEnd => _rest.IsEmpty;

    public bool TryReadBytes(int count, out ReadOnlySpan<byte> value)
    {
        value = default;
        if (count < 0 || count > _rest.Length)
        {
            return false;
        }
        value = _rest[..count];
        _rest = _rest[count..];
        return true;
    }

    public bool TryReadU8(out byte value)
    {
        value = 0;
        if (_rest.IsEmpty)
        {
            return false;
        }
        value = _rest[0];
        _rest = _rest[1..];
        return true;
    }

    public bool TryReadU16(out ushort value)
    {
        value = 0;
        if (_rest.Length < 2)
        {
            return false;
        }
        value = BinaryPrimitives.ReadUInt16BigEndian(_rest);
        _rest = _rest[2..];
        return true;
    }

    public bool TryReadU8Prefixed(out ReadOnlySpan<byte> value)
    {
        value = default;
        return TryReadU8(out var length) && TryReadBytes(length, out value);
    }

    public bool TryReadU16Prefixed(out ReadOnlySpan<byte> value)
    {
        value = default;
        return TryReadU16(out var length) && TryReadBytes(length, out value);
    }

    public bool TryReadU32Prefixed(out ReadOnlySpan<byte> value)
    {
        value = default;
        if (_rest.Length < 4)
        {
            return false;
        }
        var length = BinaryPrimitives.ReadUInt32BigEndian(_rest);
        if (length > (uint)(_rest.Length - 4))
        {
            return false;
        }
        _rest = _rest[4..];
        return TryReadBytes((int)length, out value);
    }
}
