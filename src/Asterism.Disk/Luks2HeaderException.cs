namespace Asterism.Disk;

/// <summary>Why a LUKS2 header was refused.</summary>
public enum Luks2HeaderError
{
    /// <summary>The file is shorter than the header or payload it must hold.</summary>
    Truncated,

    /// <summary>Neither header copy carries the LUKS2 magic.</summary>
    NotLuks,

    /// <summary>Version field other than 2.</summary>
    UnsupportedVersion,

    /// <summary>Header size, offset or fixed fields of the binary header are not the expected ones.</summary>
    InvalidBinaryHeader,

    /// <summary>SHA-256 checksum over binary header and JSON area does not match (both copies).</summary>
    ChecksumMismatch,

    /// <summary>JSON area is not well-formed, too deep, too large or has duplicate keys.</summary>
    MalformedJson,

    /// <summary>A JSON object holds a field this implementation does not know.</summary>
    UnknownField,

    /// <summary>A required JSON field is absent or has the wrong type.</summary>
    MissingField,

    /// <summary>Cipher other than aes-xts-plain64 (including cipher_null) or a key size other than 512 bits.</summary>
    UnsupportedCipher,

    /// <summary>Segment sector size other than 4096 bytes.</summary>
    UnsupportedSectorSize,

    /// <summary>Segment uses dm-integrity (authenticated encryption), which is not supported.</summary>
    UnsupportedIntegrity,

    /// <summary>Segment type, size, IV tweak or count other than the single dynamic crypt segment.</summary>
    UnsupportedSegment,

    /// <summary>Keyslot type or anti-forensic parameters other than luks2 / luks1 AF, 4000 stripes, sha256.</summary>
    UnsupportedKeyslot,

    /// <summary>Keyslot KDF other than pbkdf2-sha256, argon2i or argon2id, or parameters outside the accepted bounds.</summary>
    UnsupportedKdf,

    /// <summary>Digest other than a single pbkdf2-sha256 digest covering every keyslot and segment 0.</summary>
    UnsupportedDigest,

    /// <summary>Keyslot or segment areas outside the keyslot area / file, misaligned, or too small.</summary>
    InvalidArea,

    /// <summary>Two areas overlap.</summary>
    OverlappingAreas,

    /// <summary>The header carries requirements (e.g. online reencryption) this implementation does not support.</summary>
    UnsupportedRequirement,

    /// <summary>A token is malformed (including an Asterism token with unexpected fields).</summary>
    InvalidToken,

    /// <summary>The header has no keyslot.</summary>
    NoKeyslot,

    /// <summary>
    /// Trying every keyslot would cost more KDF work than the per-header budget (see <see cref="Luks2KdfCost"/>);
    /// refused before any KDF runs.
    /// </summary>
    KdfBudgetExceeded,
}

/// <summary>The only exception the LUKS2 parser throws for hostile or unsupported images.</summary>
public sealed class Luks2HeaderException : Exception
{
    /// <summary>Creates the exception with a reason and a message (never containing key material).</summary>
    public Luks2HeaderException(Luks2HeaderError reason, string message)
        : base($"LUKS2 header refused ({reason}): {message}")
    {
        Reason = reason;
    }

    /// <summary>Creates the exception with an inner cause.</summary>
    public Luks2HeaderException(Luks2HeaderError reason, string message, Exception inner)
        : base($"LUKS2 header refused ({reason}): {message}", inner)
    {
        Reason = reason;
    }

    /// <summary>Why the header was refused.</summary>
    public Luks2HeaderError Reason { get; }
}
