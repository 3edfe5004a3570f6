using System.Security.Cryptography;
using System.Text;
using Org.BouncyCastle.Math.EC.Rfc7748;

namespace Asterism.Secrets;

/// <summary>
/// The age v1 file format (age-encryption.org/v1) with X25519 recipients: a header of recipient stanzas each
/// wrapping the 16-byte file key, an HMAC-SHA256 over the header, and a ChaCha20-Poly1305 STREAM payload in 64 KiB
/// chunks. Only this framing is ours: X25519 is BouncyCastle's, HKDF, HMAC and ChaCha20-Poly1305 the BCL's. Both the
/// binary form and the ASCII armor (PEM-like, so a share can be pasted) are read and written.
/// </summary>
public static class AgeFile
{
    public const string Intro = "age-encryption.org/v1";
    public const string ArmorBegin = "-----BEGIN AGE ENCRYPTED FILE-----";
    public const string ArmorEnd = "-----END AGE ENCRYPTED FILE-----";

    /// <summary>Default limit of a whole file: share files are a few KiB.</summary>
    public const int DefaultMaxFileSize = 1024 * 1024;

    private const int MaxHeaderSize = 16 * 1024;
    private const int MaxStanzas = 64;
    private const int FileKeySize = 16;
    private const int ChunkSize = 64 * 1024;
    private const int TagSize = 16;
    private const int PayloadNonceSize = 16;
    private const int ColumnsPerLine = 64;
    private const string X25519Label = "age-encryption.org/v1/X25519";

    /// <summary>Encrypts <paramref name="plaintext"/> to every recipient; <paramref name="armor"/> gives the pasteable text form.</summary>
    public static byte[] Encrypt(ReadOnlySpan<byte> plaintext, IReadOnlyCollection<AgeRecipient> recipients, bool armor = false)
    {
        if (recipients.Count == 0)
        {
            throw new ArgumentException("at least one recipient is needed", nameof(recipients));
        }
        var fileKey = RandomNumberGenerator.GetBytes(FileKeySize);
        try
        {
            var header = new StringBuilder();
            header.Append(Intro).Append('\n');
            foreach (var recipient in recipients)
            {
                AppendX25519Stanza(header, recipient, fileKey);
            }
            header.Append("---");
            var headerBytes = Encoding.ASCII.GetBytes(header.ToString());
            var mac = HeaderMac(fileKey, headerBytes);
            using var output = new MemoryStream();
            output.Write(headerBytes);
            output.Write(Encoding.ASCII.GetBytes(" " + RawBase64(mac) + "\n"));
            WritePayload(output, fileKey, plaintext);
            var binary = output.ToArray();
            return armor ? Armor(binary) : binary;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(fileKey);
        }
    }

    /// <summary>
    /// Decrypts a binary or armored age file with the first identity that opens one of its X25519 stanzas. Every
    /// failure (malformed, truncated, too large, no matching identity, bad MAC, tampered payload) is an
    /// <see cref="AgeException"/> with one clear message.
    /// </summary>
    public static byte[] Decrypt(ReadOnlySpan<byte> file, IReadOnlyCollection<AgeIdentity> identities, int maxFileSize = DefaultMaxFileSize)
    {
        if (file.Length > maxFileSize)
        {
            throw new AgeException($"the file is larger than {maxFileSize} bytes");
        }
        var binary = IsArmored(file) ? Dearmor(file) : file.ToArray();
        var header = Header.Parse(binary);
        var fileKey = UnwrapFileKey(header, identities);
        try
        {
            var mac = HeaderMac(fileKey, binary.AsSpan(0, header.MacInputLength));
            if (!CryptographicOperations.FixedTimeEquals(mac, header.Mac))
            {
                throw new AgeException("the header MAC does not match: the file was modified");
            }
            return ReadPayload(binary.AsSpan(header.PayloadOffset), fileKey);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(fileKey);
        }
    }

    /// <summary>True when the bytes look like an age file (binary or armored), so callers can tell it from other formats.</summary>
    public static bool LooksLikeAge(ReadOnlySpan<byte> file) =>
        IsArmored(file) || file.StartsWith(Encoding.ASCII.GetBytes(Intro + "\n"));

    private static void AppendX25519Stanza(StringBuilder header, AgeRecipient recipient, byte[] fileKey)
    {
        var ephemeral = RandomNumberGenerator.GetBytes(X25519.ScalarSize);
        var share = new byte[X25519.PointSize];
        var shared = new byte[X25519.PointSize];
        var wrapKey = new byte[32];
        try
        {
            X25519.ScalarMultBase(ephemeral, 0, share, 0);
            if (!X25519.CalculateAgreement(ephemeral, 0, recipient.PublicKey.ToArray(), 0, shared, 0))
            {
                throw new AgeException($"recipient {recipient} is a low-order point; it cannot receive files");
            }
            DeriveWrapKey(shared, share, recipient.PublicKey, wrapKey);
            var body = new byte[FileKeySize + TagSize];
            using (var aead = new ChaCha20Poly1305(wrapKey))
            {
                aead.Encrypt(new byte[12], fileKey, body.AsSpan(0, FileKeySize), body.AsSpan(FileKeySize));
            }
            header.Append("-> X25519 ").Append(RawBase64(share)).Append('\n');
            AppendBody(header, body);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(ephemeral);
            CryptographicOperations.ZeroMemory(shared);
            CryptographicOperations.ZeroMemory(wrapKey);
        }
    }

    private static void AppendBody(StringBuilder header, byte[] body)
    {
        var text = RawBase64(body);
        for (var i = 0; i <= text.Length; i += ColumnsPerLine)
        {
            // A full last line is followed by an empty one: a short line ends the body.
            header.Append(text.AsSpan(i, Math.Min(ColumnsPerLine, text.Length - i))).Append('\n');
        }
    }

    private static void DeriveWrapKey(byte[] shared, ReadOnlySpan<byte> ephemeralShare, ReadOnlySpan<byte> recipient, byte[] wrapKey)
    {
        Span<byte> salt = stackalloc byte[X25519.PointSize * 2];
        ephemeralShare.CopyTo(salt);
        recipient.CopyTo(salt[X25519.PointSize..]);
        HKDF.DeriveKey(HashAlgorithmName.SHA256, shared, wrapKey, salt, Encoding.ASCII.GetBytes(X25519Label));
    }

    private static byte[] UnwrapFileKey(Header header, IReadOnlyCollection<AgeIdentity> identities)
    {
        var sawX25519 = false;
        foreach (var stanza in header.Stanzas)
        {
            if (stanza.Arguments[0] != "X25519")
            {
                continue;
            }
            sawX25519 = true;
            if (stanza.Arguments.Count != 2 || DecodeRawBase64(stanza.Arguments[1]) is not { Length: X25519.PointSize } share)
            {
                throw new AgeException("malformed X25519 stanza in the header");
            }
            if (stanza.Body.Length != FileKeySize + TagSize)
            {
                throw new AgeException("malformed X25519 stanza body in the header");
            }
            foreach (var identity in identities)
            {
                var shared = new byte[X25519.PointSize];
                var wrapKey = new byte[32];
                var fileKey = new byte[FileKeySize];
                var scalar = identity.Scalar.ToArray();
                try
                {
                    if (!X25519.CalculateAgreement(scalar, 0, share, 0, shared, 0))
                    {
                        throw new AgeException("X25519 stanza with a low-order share: the file is malformed or hostile");
                    }
                    DeriveWrapKey(shared, share, identity.Recipient.PublicKey, wrapKey);
                    using var aead = new ChaCha20Poly1305(wrapKey);
                    aead.Decrypt(new byte[12], stanza.Body.AsSpan(0, FileKeySize), stanza.Body.AsSpan(FileKeySize), fileKey);
                    return fileKey;
                }
                catch (AuthenticationTagMismatchException)
                {
                    CryptographicOperations.ZeroMemory(fileKey);
                }
                finally
                {
                    CryptographicOperations.ZeroMemory(scalar);
                    CryptographicOperations.ZeroMemory(shared);
                    CryptographicOperations.ZeroMemory(wrapKey);
                }
            }
        }
        throw new AgeException(sawX25519
            ? "none of the given identities opens this file (it was encrypted to another recipient)"
            : "the file has no X25519 recipient stanza (passphrase, ssh or plugin files are not supported)");
    }

    private static byte[] HeaderMac(byte[] fileKey, ReadOnlySpan<byte> header)
    {
        var macKey = new byte[32];
        try
        {
            HKDF.DeriveKey(HashAlgorithmName.SHA256, fileKey, macKey, [], "header"u8);
            return HMACSHA256.HashData(macKey, header);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(macKey);
        }
    }

    private static byte[] PayloadKey(byte[] fileKey, ReadOnlySpan<byte> nonce)
    {
        var key = new byte[32];
        HKDF.DeriveKey(HashAlgorithmName.SHA256, fileKey, key, nonce, "payload"u8);
        return key;
    }

    private static void WritePayload(Stream output, byte[] fileKey, ReadOnlySpan<byte> plaintext)
    {
        var nonce = RandomNumberGenerator.GetBytes(PayloadNonceSize);
        output.Write(nonce);
        var key = PayloadKey(fileKey, nonce);
        try
        {
            using var aead = new ChaCha20Poly1305(key);
            var chunkNonce = new byte[12];
            var counter = 0L;
            var offset = 0;
            do
            {
                var length = Math.Min(ChunkSize, plaintext.Length - offset);
                var last = offset + length == plaintext.Length;
                SetChunkNonce(chunkNonce, counter++, last);
                var chunk = new byte[length + TagSize];
                aead.Encrypt(chunkNonce, plaintext.Slice(offset, length), chunk.AsSpan(0, length), chunk.AsSpan(length));
                output.Write(chunk);
                offset += length;
                if (last)
                {
                    break;
                }
            }
            while (true);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(key);
        }
    }

    private static byte[] ReadPayload(ReadOnlySpan<byte> payload, byte[] fileKey)
    {
        if (payload.Length < PayloadNonceSize + TagSize)
        {
            throw new AgeException("the payload is truncated");
        }
        var key = PayloadKey(fileKey, payload[..PayloadNonceSize]);
        var plaintext = new byte[payload.Length - PayloadNonceSize];
        var written = 0;
        try
        {
            using var aead = new ChaCha20Poly1305(key);
            var chunkNonce = new byte[12];
            var rest = payload[PayloadNonceSize..];
            for (var counter = 0L; ; counter++)
            {
                var last = rest.Length <= ChunkSize + TagSize;
                var chunk = rest[..Math.Min(rest.Length, ChunkSize + TagSize)];
                if (chunk.Length < TagSize || (last && chunk.Length == TagSize && counter > 0))
                {
                    throw new AgeException("the payload is truncated or has an empty final chunk");
                }
                SetChunkNonce(chunkNonce, counter, last);
                var length = chunk.Length - TagSize;
                try
                {
                    aead.Decrypt(chunkNonce, chunk[..length], chunk[length..], plaintext.AsSpan(written, length));
                }
                catch (AuthenticationTagMismatchException)
                {
                    throw new AgeException($"payload chunk {counter} does not authenticate: the file was modified or truncated");
                }
                written += length;
                rest = rest[chunk.Length..];
                if (last)
                {
                    break;
                }
            }
            var result = plaintext.AsSpan(0, written).ToArray();
            return result;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(plaintext);
            CryptographicOperations.ZeroMemory(key);
        }
    }

    private static void SetChunkNonce(byte[] nonce, long counter, bool last)
    {
        Array.Clear(nonce);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(nonce.AsSpan(3, 8), counter);
        nonce[11] = last ? (byte)1 : (byte)0;
    }

    private static string RawBase64(ReadOnlySpan<byte> bytes) => Convert.ToBase64String(bytes).TrimEnd('=');

    /// <summary>Unpadded standard base64 as age writes it; null unless canonical.</summary>
    private static byte[]? DecodeRawBase64(string text)
    {
        if (text.Length % 4 == 1 || text.Any(c => !(char.IsAsciiLetterOrDigit(c) || c == '+' || c == '/')))
        {
            return null;
        }
        var padded = text + new string('=', (4 - (text.Length % 4)) % 4);
        try
        {
            var bytes = Convert.FromBase64String(padded);
            return RawBase64(bytes) == text ? bytes : null;
        }
        catch (FormatException)
        {
            return null;
        }
    }

    private static bool IsArmored(ReadOnlySpan<byte> file)
    {
        var start = 0;
        while (start < file.Length && file[start] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')
        {
            start++;
        }
        return file[start..].StartsWith(Encoding.ASCII.GetBytes(ArmorBegin));
    }

    /// <summary>The armored form: standard padded base64 in 64-column lines between the BEGIN and END lines.</summary>
    public static byte[] Armor(ReadOnlySpan<byte> binary)
    {
        var text = Convert.ToBase64String(binary);
        var armored = new StringBuilder(ArmorBegin).Append('\n');
        for (var i = 0; i < text.Length; i += ColumnsPerLine)
        {
            armored.Append(text.AsSpan(i, Math.Min(ColumnsPerLine, text.Length - i))).Append('\n');
        }
        armored.Append(ArmorEnd).Append('\n');
        return Encoding.ASCII.GetBytes(armored.ToString());
    }

    private static byte[] Dearmor(ReadOnlySpan<byte> file)
    {
        var lines = Encoding.ASCII.GetString(file).Trim().Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        if (lines.Length < 3 || lines[0] != ArmorBegin || lines[^1] != ArmorEnd)
        {
            throw new AgeException("malformed armor: expected the BEGIN line, base64 lines and the END line");
        }
        var body = lines[1..^1];
        for (var i = 0; i < body.Length; i++)
        {
            if (body[i].Length > ColumnsPerLine || (i < body.Length - 1 && body[i].Length != ColumnsPerLine) || body[i].Length == 0)
            {
                throw new AgeException("malformed armor: base64 lines must be 64 columns, the last one at most");
            }
        }
        try
        {
            return Convert.FromBase64String(string.Concat(body));
        }
        catch (FormatException)
        {
            throw new AgeException("malformed armor: invalid base64");
        }
    }

    private sealed record Stanza(IReadOnlyList<string> Arguments, byte[] Body);

    private sealed record Header(IReadOnlyList<Stanza> Stanzas, byte[] Mac, int MacInputLength, int PayloadOffset)
    {
        public static Header Parse(byte[] file)
        {
            var position = 0;
            string ReadLine()
            {
                var end = Array.IndexOf(file, (byte)'\n', position, Math.Min(file.Length - position, MaxHeaderSize - position + 1));
                if (end < 0 || end >= MaxHeaderSize)
                {
                    throw new AgeException(position >= MaxHeaderSize || file.Length > MaxHeaderSize
                        ? $"the header is larger than {MaxHeaderSize} bytes"
                        : "the header is truncated");
                }
                var line = file.AsSpan(position, end - position);
                if (line.ContainsAnyExceptInRange((byte)32, (byte)126))
                {
                    throw new AgeException("the header contains non-printable bytes");
                }
                position = end + 1;
                return Encoding.ASCII.GetString(line);
            }
            if (file.Length == 0)
            {
                throw new AgeException("the file is empty");
            }
            var intro = file.AsSpan(0, Math.Min(file.Length, Intro.Length + 1));
            if (!intro.SequenceEqual(Encoding.ASCII.GetBytes(Intro + "\n")))
            {
                throw new AgeException(intro.StartsWith("age-encryption.org/"u8)
                    ? "unsupported age format version (only age-encryption.org/v1 is read)"
                    : "not an age file");
            }
            position = Intro.Length + 1;
            var stanzas = new List<Stanza>();
            while (true)
            {
                var lineStart = position;
                var line = ReadLine();
                if (line.StartsWith("--- ", StringComparison.Ordinal))
                {
                    var mac = DecodeRawBase64(line[4..]);
                    if (mac is not { Length: 32 })
                    {
                        throw new AgeException("malformed header MAC");
                    }
                    if (stanzas.Count == 0)
                    {
                        throw new AgeException("the header has no recipient stanza");
                    }
                    return new Header(stanzas, mac, lineStart + 3, position);
                }
                if (!line.StartsWith("-> ", StringComparison.Ordinal))
                {
                    throw new AgeException("malformed header line (expected a stanza or the MAC line)");
                }
                if (stanzas.Count >= MaxStanzas)
                {
                    throw new AgeException($"the header has more than {MaxStanzas} stanzas");
                }
                var arguments = line[3..].Split(' ');
                if (arguments.Any(a => a.Length == 0))
                {
                    throw new AgeException("malformed stanza arguments");
                }
                var body = new StringBuilder();
                while (true)
                {
                    var bodyLine = ReadLine();
                    if (bodyLine.Length > ColumnsPerLine)
                    {
                        throw new AgeException("a stanza body line is longer than 64 columns");
                    }
                    body.Append(bodyLine);
                    if (bodyLine.Length < ColumnsPerLine)
                    {
                        break;
                    }
                }
                var bytes = DecodeRawBase64(body.ToString()) ?? throw new AgeException("a stanza body is not canonical unpadded base64");
                stanzas.Add(new Stanza(arguments, bytes));
            }
        }
    }
}
