namespace Asterism.Tpm;

/// <summary>TPM 2.0 command codes used by this client (TPM 2.0 Part 2, TPM_CC).</summary>
public enum TpmCommandCode : uint
{
    HierarchyChangeAuth = 0x129,
    NvDefineSpace = 0x12A,
    CreatePrimary = 0x131,
    ActivateCredential = 0x147,
    NvWrite = 0x137,
    NvRead = 0x14E,
    PolicySecret = 0x151,
    PcrEvent = 0x13C,
    Startup = 0x144,
    Shutdown = 0x145,
    Quote = 0x158,
    FlushContext = 0x165,
    NvReadPublic = 0x169,
    ReadPublic = 0x173,
    StartAuthSession = 0x176,
    GetRandom = 0x17B,
    PcrRead = 0x17E,
    PcrExtend = 0x182,
}

/// <summary>Startup and shutdown types (TPM_SU).</summary>
public enum TpmStartupType : ushort
{
    Clear = 0x0000,
    State = 0x0001,
}

/// <summary>Hierarchies a primary key can be created under.</summary>
public enum TpmHierarchy : uint
{
    Owner = 0x40000001,
    Null = 0x40000007,
    Lockout = 0x4000000A,
    Endorsement = 0x4000000B,
    Platform = 0x4000000C,
}

/// <summary>Object attributes (TPMA_OBJECT).</summary>
[Flags]
public enum TpmObjectAttributes : uint
{
    None = 0,
    FixedTpm = 0x2,
    StClear = 0x4,
    FixedParent = 0x10,
    SensitiveDataOrigin = 0x20,
    UserWithAuth = 0x40,
    AdminWithPolicy = 0x80,
    NoDa = 0x400,
    EncryptedDuplication = 0x800,
    Restricted = 0x10000,
    Decrypt = 0x20000,
    Sign = 0x40000,
}

/// <summary>Algorithm identifiers (TPM_ALG_ID) the client and the parsers know.</summary>
public static class TpmAlg
{
    public const ushort Rsa = 0x0001;
    public const ushort Sha1 = 0x0004;
    public const ushort Hmac = 0x0005;
    public const ushort Aes = 0x0006;
    public const ushort KeyedHash = 0x0008;
    public const ushort Xor = 0x000A;
    public const ushort Sha256 = 0x000B;
    public const ushort Sha384 = 0x000C;
    public const ushort Sha512 = 0x000D;
    public const ushort Null = 0x0010;
    public const ushort Sm3_256 = 0x0012;
    public const ushort RsaSsa = 0x0014;
    public const ushort RsaPss = 0x0016;
    public const ushort Ecdsa = 0x0018;
    public const ushort Ecdaa = 0x001A;
    public const ushort Sm2 = 0x001B;
    public const ushort EcSchnorr = 0x001C;
    public const ushort Ecc = 0x0023;
    public const ushort SymCipher = 0x0025;

    /// <summary>Digest size of a hash algorithm, or -1 when the algorithm is not a known hash.</summary>
    public static int DigestSize(ushort hashAlg) => hashAlg switch
    {
        Sha1 => 20,
        Sha256 => 32,
        Sha384 => 48,
        Sha512 => 64,
        Sm3_256 => 32,
        _ => -1,
    };
}

/// <summary>Fixed values from TPM 2.0 Part 2.</summary>
internal static class TpmConst
{
    public const ushort StNoSessions = 0x8001;
    public const ushort StSessions = 0x8002;
    public const ushort StAttestQuote = 0x8018;
    public const uint GeneratedValue = 0xFF544347;
    public const uint PasswordSession = 0x40000009;
    public const byte SessionTypePolicy = 0x01;
    public const int MaxNvBufferChunk = 768;
    public const int MaxNvIndexSize = 4096;
    public const ushort EccNistP256 = 0x0003;
    public const int HeaderSize = 10;
    public const int PcrCount = 24;
    public const int MaxDigest = 64;
    public const int MaxName = 68;
    public const int MaxEventData = 1024;
}
