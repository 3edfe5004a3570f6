using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Asterism.Disk.Tests;

public sealed class Luks2ValidationTests
{
    private const long ImageSize = Luks2Image.PayloadOffset + (64 * 1024);
    private static readonly byte[] Passphrase = RandomNumberGenerator.GetBytes(32);
    private static readonly Lazy<byte[]> Valid = new(() =>
    {
        var device = new MemoryBlockDevice(ImageSize);
        using var image = Luks2Image.Format(device, ownsDevice: false, Passphrase);
        image.SetToken(0, StateDiskToken.Serialize(false));
        return device.Snapshot();
    });

    private static string Json(byte[] image)
    {
        var area = image.AsSpan(4096, 12288);
        return Encoding.UTF8.GetString(area[..area.IndexOf((byte)0)]);
    }

    /// <summary>Writes <paramref name="json"/> into both header copies and fixes their checksums.</summary>
    internal static byte[] WithJson(byte[] source, string json)
    {
        var image = (byte[])source.Clone();
        var bytes = Encoding.UTF8.GetBytes(json);
        foreach (var offset in new[] { 0, 16384 })
        {
            var area = image.AsSpan(offset + 4096, 12288);
            area.Clear();
            bytes.CopyTo(area);
            Rechecksum(image, offset);
        }
        return image;
    }

    internal static void Rechecksum(byte[] image, int offset)
    {
        var copy = image.AsSpan(offset, 16384);
        copy.Slice(448, 64).Clear();
        var hash = SHA256.HashData(copy);
        hash.CopyTo(copy[448..]);
    }

    private static Luks2HeaderException Refused(byte[] image)
    {
        var e = Assert.Throws<Luks2HeaderException>(() => Luks2Header.Read(new MemoryBlockDevice(image)));
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
        return e;
    }

    [Fact]
    public void Read_ValidImage_ExposesExpectedParameters()
    {
        var header = Luks2Header.Read(new MemoryBlockDevice(Valid.Value));
        Assert.Equal("aes-xts-plain64", header.Cipher);
        Assert.Equal(4096, header.SectorSize);
        Assert.Equal(Luks2Image.PayloadOffset, header.Metadata.SegmentOffset);
        var slot = Assert.Single(header.Metadata.Keyslots.Values);
        Assert.Equal(("pbkdf2", 1000, 32768L, 258048L), (slot.Kdf.Type, slot.Kdf.Iterations, slot.AreaOffset, slot.AreaSize));
        Assert.Equal(2UL, header.SequenceId);
        Assert.True(header.PrimaryValid && header.SecondaryValid);
        Assert.Equal(header.Uuid.ToLowerInvariant(), header.Uuid);
    }

    public static TheoryData<string, string, Luks2HeaderError> JsonCases() => new()
    {
        { "\"encryption\":\"aes-xts-plain64\",\"sector_size\"", "\"encryption\":\"cipher_null-ecb\",\"sector_size\"", Luks2HeaderError.UnsupportedCipher },
        { "\"encryption\":\"aes-xts-plain64\",\"sector_size\"", "\"encryption\":\"aes-cbc-essiv:sha256\",\"sector_size\"", Luks2HeaderError.UnsupportedCipher },
        { "\"encryption\":\"aes-xts-plain64\",\"key_size\"", "\"encryption\":\"cipher_null\",\"key_size\"", Luks2HeaderError.UnsupportedCipher },
        { "\"type\":\"luks2\",\"key_size\":64", "\"type\":\"luks2\",\"key_size\":32", Luks2HeaderError.UnsupportedCipher },
        { "\"sector_size\":4096", "\"sector_size\":512", Luks2HeaderError.UnsupportedSectorSize },
        { "\"sector_size\":4096", "\"sector_size\":4096,\"integrity\":{\"type\":\"hmac(sha256)\",\"journal_encryption\":\"none\",\"journal_integrity\":\"none\"}", Luks2HeaderError.UnsupportedIntegrity },
        { "\"size\":\"dynamic\"", "\"size\":\"4096\"", Luks2HeaderError.UnsupportedSegment },
        { "\"iv_tweak\":\"0\"", "\"iv_tweak\":\"8\"", Luks2HeaderError.UnsupportedSegment },
        { "\"type\":\"crypt\"", "\"type\":\"linear\"", Luks2HeaderError.UnsupportedSegment },
        { "\"stripes\":4000", "\"stripes\":1", Luks2HeaderError.UnsupportedKeyslot },
        { "\"type\":\"luks1\",\"stripes\":4000,\"hash\":\"sha256\"", "\"type\":\"luks1\",\"stripes\":4000,\"hash\":\"sha1\"", Luks2HeaderError.UnsupportedKeyslot },
        { "\"type\":\"luks2\",\"key_size\"", "\"type\":\"reencrypt\",\"key_size\"", Luks2HeaderError.UnsupportedKeyslot },
        { "\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,\"salt\"", "\"type\":\"pbkdf2\",\"hash\":\"sha1\",\"iterations\":1000,\"salt\"", Luks2HeaderError.UnsupportedKdf },
        { "\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,\"salt\"", "\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":2147483647,\"salt\"", Luks2HeaderError.UnsupportedKdf },
        { "\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,\"salt\"", "\"type\":\"argon2id\",\"time\":4,\"memory\":104857600,\"cpus\":2,\"salt\"", Luks2HeaderError.UnsupportedKdf },
        { "\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,\"salt\"", "\"type\":\"argon2id\",\"time\":100000,\"memory\":1048576,\"cpus\":2,\"salt\"", Luks2HeaderError.UnsupportedKdf },
        { "\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,\"salt\"", "\"type\":\"argon2id\",\"time\":4,\"memory\":65536,\"cpus\":1000,\"salt\"", Luks2HeaderError.UnsupportedKdf },
        { "\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,\"salt\"", "\"type\":\"scrypt\",\"hash\":\"sha256\",\"iterations\":1000,\"salt\"", Luks2HeaderError.UnsupportedKdf },
        { "\"type\":\"pbkdf2\",\"keyslots\"", "\"type\":\"argon2\",\"keyslots\"", Luks2HeaderError.UnsupportedDigest },
        { "\"segments\":[\"0\"],\"hash\":\"sha256\"", "\"segments\":[\"0\"],\"hash\":\"sha1\"", Luks2HeaderError.UnsupportedDigest },
        { "\"offset\":\"32768\"", "\"offset\":\"0\"", Luks2HeaderError.InvalidArea },
        { "\"offset\":\"32768\"", "\"offset\":\"32769\"", Luks2HeaderError.InvalidArea },
        { "\"offset\":\"32768\"", "\"offset\":\"16777216\"", Luks2HeaderError.InvalidArea },
        { "\"size\":\"258048\"", "\"size\":\"4096\"", Luks2HeaderError.InvalidArea },
        { "\"offset\":\"16777216\"", "\"offset\":\"0\"", Luks2HeaderError.InvalidArea },
        { "\"offset\":\"16777216\"", "\"offset\":\"1099511627776\"", Luks2HeaderError.Truncated },
        { "\"offset\":\"32768\"", "\"offset\":\"-1\"", Luks2HeaderError.MalformedJson },
        { "\"keyslots_size\":\"16744448\"", "\"keyslots_size\":\"16744448\",\"requirements\":{\"mandatory\":[\"online-reencrypt\"]}", Luks2HeaderError.UnsupportedRequirement },
        { "\"keyslots_size\":\"16744448\"", "\"keyslots_size\":\"16744448\",\"flags\":[\"evil\"]", Luks2HeaderError.UnknownField },
        { "\"config\":{", "\"bogus\":1,\"config\":{", Luks2HeaderError.UnknownField },
        { "\"type\":\"luks2\",\"key_size\"", "\"extra\":true,\"type\":\"luks2\",\"key_size\"", Luks2HeaderError.UnknownField },
        { "\"type\":\"luks2\",\"key_size\"", "\"type\":\"luks2\",\"type\":\"luks2\",\"key_size\"", Luks2HeaderError.MalformedJson },
        { "\"json_size\":\"12288\"", "\"json_size\":\"4096\"", Luks2HeaderError.InvalidBinaryHeader },
        { "\"diskIsInitialized\":false", "\"diskIsInitialized\":\"yes\"", Luks2HeaderError.InvalidToken },
        { "\"diskIsInitialized\":false", "\"diskIsInitialized\":false,\"more\":1", Luks2HeaderError.InvalidToken },
        { "\"keyslots\":[],\"diskIsInitialized\"", "\"keyslots\":[\"7\"],\"diskIsInitialized\"", Luks2HeaderError.InvalidToken },
        { "\"keyslots\":[\"0\"],\"segments\"", "\"keyslots\":[],\"segments\"", Luks2HeaderError.UnsupportedDigest },
        { "{\"keyslots\":{", "{\"keyslots\":[", Luks2HeaderError.MalformedJson },
    };

    [Theory]
    [MemberData(nameof(JsonCases))]
    public void Read_CorruptedJson_Refused(string find, string replace, Luks2HeaderError expected)
    {
        var json = Json(Valid.Value);
        Assert.Contains(find, json);
        var e = Refused(WithJson(Valid.Value, ReplaceFirst(json, find, replace)));
        Assert.Equal(expected, e.Reason);
    }

    private static string ReplaceFirst(string s, string find, string replace)
    {
        var i = s.IndexOf(find, StringComparison.Ordinal);
        return s[..i] + replace + s[(i + find.Length)..];
    }

    [Fact]
    public void Read_NoKeyslotsOrOverlappingAreas_Refused()
    {
        var json = Json(Valid.Value);
        var start = json.IndexOf("\"keyslots\":{", StringComparison.Ordinal) + "\"keyslots\":{".Length;
        var end = json.IndexOf(",\"tokens\"", StringComparison.Ordinal) - 1;
        var slot0 = json[start..end];
        var none = json[..start] + json[end..];
        none = none.Replace("\"keyslots\":[\"0\"],\"segments\"", "\"keyslots\":[],\"segments\"", StringComparison.Ordinal);
        Assert.Equal(Luks2HeaderError.NoKeyslot, Refused(WithJson(Valid.Value, none)).Reason);

        var slot1 = slot0.Replace("\"0\":{", "\"1\":{", StringComparison.Ordinal).Replace("\"offset\":\"32768\"", "\"offset\":\"36864\"", StringComparison.Ordinal);
        var overlap = json[..end] + "," + slot1 + json[end..];
        overlap = overlap.Replace("\"keyslots\":[\"0\"],\"segments\"", "\"keyslots\":[\"0\",\"1\"],\"segments\"", StringComparison.Ordinal);
        Assert.Equal(Luks2HeaderError.OverlappingAreas, Refused(WithJson(Valid.Value, overlap)).Reason);
    }

    [Fact]
    public void Read_DeepOrOversizedJson_Refused()
    {
        var json = Json(Valid.Value);
        var deep = json.Replace("\"tokens\":{", "\"tokens\":{\"1\":{\"type\":\"x\",\"keyslots\":[],\"d\":" + new string('[', 40) + new string(']', 40) + "},", StringComparison.Ordinal);
        Assert.Equal(Luks2HeaderError.MalformedJson, Refused(WithJson(Valid.Value, deep)).Reason);

        // JSON filling the whole area without a terminator.
        var image = (byte[])Valid.Value.Clone();
        foreach (var offset in new[] { 0, 16384 })
        {
            image.AsSpan(offset + 4096, 12288).Fill((byte)' ');
            Rechecksum(image, offset);
        }
        Assert.Equal(Luks2HeaderError.MalformedJson, Refused(image).Reason);
        Assert.Equal(Luks2HeaderError.MalformedJson, Refused(WithJson(Valid.Value, json + " {}")).Reason);
        Assert.Equal(Luks2HeaderError.MissingField, Refused(WithJson(Valid.Value, "[]")).Reason);
    }

    [Fact]
    public void Read_BinaryHeaderCorruption_Refused()
    {
        var v = Valid.Value;

        var badChecksum = (byte[])v.Clone();
        badChecksum[4096] ^= 1;
        badChecksum[16384 + 4096] ^= 1;
        Assert.Equal(Luks2HeaderError.ChecksumMismatch, Refused(badChecksum).Reason);

        var version1 = (byte[])v.Clone();
        version1[7] = 1;
        version1[16384 + 7] = 1;
        Assert.Equal(Luks2HeaderError.UnsupportedVersion, Refused(version1).Reason);

        var hdrSize = (byte[])v.Clone();
        foreach (var o in new[] { 0, 16384 })
        {
            BinaryPrimitives.WriteUInt64BigEndian(hdrSize.AsSpan(o + 8), 32768);
            Rechecksum(hdrSize, o);
        }
        Assert.Equal(Luks2HeaderError.InvalidBinaryHeader, Refused(hdrSize).Reason);

        var alg = (byte[])v.Clone();
        foreach (var o in new[] { 0, 16384 })
        {
            Encoding.ASCII.GetBytes("sha1\0\0").CopyTo(alg, o + 72);
            Rechecksum(alg, o);
        }
        Assert.Equal(Luks2HeaderError.InvalidBinaryHeader, Refused(alg).Reason);

        var noMagic = (byte[])v.Clone();
        noMagic.AsSpan(0, 6).Clear();
        noMagic.AsSpan(16384, 6).Clear();
        Assert.Equal(Luks2HeaderError.NotLuks, Refused(noMagic).Reason);
    }

    [Fact]
    public void Read_OneCopyCorrupt_UsesTheOther()
    {
        foreach (var broken in new[] { 0, 16384 })
        {
            var image = (byte[])Valid.Value.Clone();
            image[broken + 5000] ^= 0xff;
            var header = Luks2Header.Read(new MemoryBlockDevice(image));
            Assert.Equal(broken != 0, header.PrimaryValid);
            Assert.Equal(broken == 0, header.SecondaryValid);
            using var img = Luks2Image.Open(new MemoryBlockDevice(image), ownsDevice: false);
            Assert.Equal(KeyCheckResult.Accepted, img.CheckKey(Passphrase));
        }
    }

    [Fact]
    public void Read_HigherSequenceCopyWins()
    {
        var device = new MemoryBlockDevice(Valid.Value);
        using (var img = Luks2Image.Open(device, ownsDevice: false))
        {
            img.SetToken(0, StateDiskToken.Serialize(true));
        }
        var image = device.Snapshot();
        // Put the old secondary copy back: primary has the higher sequence id and must win.
        Valid.Value.AsSpan(16384, 16384).CopyTo(image.AsSpan(16384));
        Assert.True(StateDiskToken.Parse(Luks2Header.Read(new MemoryBlockDevice(image)).Metadata.Tokens[0]));
        // Old primary, new secondary: the secondary wins.
        var image2 = device.Snapshot();
        Valid.Value.AsSpan(0, 16384).CopyTo(image2);
        Assert.True(StateDiskToken.Parse(Luks2Header.Read(new MemoryBlockDevice(image2)).Metadata.Tokens[0]));
    }

    [Fact]
    public void Read_RandomBytes_RefusedWithoutCrash()
    {
        var rng = new Random(1619);
        foreach (var size in new[] { 0, 1, 100, 4095, 4096, 16384, 40000, 70000 })
        {
            for (var i = 0; i < 5; i++)
            {
                var bytes = new byte[size];
                rng.NextBytes(bytes);
                Assert.Equal(size >= 4096 ? Luks2HeaderError.NotLuks : Luks2HeaderError.Truncated, Refused(bytes).Reason);
                if (size >= 16384 + 4096)
                {
                    // With magic but random content.
                    Valid.Value.AsSpan(0, 8).CopyTo(bytes);
                    Valid.Value.AsSpan(16384, 8).CopyTo(bytes.AsSpan(16384));
                    Refused(bytes);
                }
            }
        }
    }

    [Fact]
    public void Read_Truncated_Refused()
    {
        foreach (var length in new[] { 0, 6, 100, 4096, 8000, 16384, 20000, 32768, 100000, 290815, 16777215 })
        {
            var e = Refused(Valid.Value.AsSpan(0, length).ToArray());
            Assert.True(e.Reason is Luks2HeaderError.Truncated, $"{length}: {e.Reason}");
        }
    }

    [Fact]
    public void Read_RandomJsonMutations_OnlyHeaderExceptionOrValid()
    {
        var json = Encoding.UTF8.GetBytes(Json(Valid.Value));
        var rng = new Random(42);
        var accepted = 0;
        for (var i = 0; i < 3000; i++)
        {
            var mutated = (byte[])json.Clone();
            for (var k = rng.Next(1, 4); k > 0; k--)
            {
                mutated[rng.Next(mutated.Length)] = (byte)rng.Next(1, 256);
            }
            try
            {
                Luks2Metadata.Parse(mutated, Luks2Header.HeaderSize);
            }
            catch (Luks2HeaderException)
            {
                continue;
            }
            // Mutations the parser accepts (e.g. inside base64 salts) must still behave on a whole image.
            if (accepted++ < 10)
            {
                using var img = Luks2Image.Open(new MemoryBlockDevice(WithJson(Valid.Value, Encoding.UTF8.GetString(mutated))), ownsDevice: false);
                img.CheckKey(Passphrase);
            }
        }
    }

    [Fact]
    public void Probe_FileKinds_Classified()
    {
        using var dir = new TempDir();
        Assert.Equal(StateDiskKind.Missing, StateDisk.Probe(dir.File("none")).Kind);
        File.WriteAllBytes(dir.File("zero"), new byte[64 * 1024]);
        Assert.Equal(StateDiskKind.NotLuks, StateDisk.Probe(dir.File("zero")).Kind);
        File.WriteAllBytes(dir.File("short"), [1, 2, 3]);
        Assert.Equal(StateDiskKind.NotLuks, StateDisk.Probe(dir.File("short")).Kind);
        File.WriteAllBytes(dir.File("valid"), Valid.Value);
        var probe = StateDisk.Probe(dir.File("valid"));
        Assert.Equal(StateDiskKind.Uninitialized, probe.Kind);
        Assert.Equal(Luks2Header.Read(new MemoryBlockDevice(Valid.Value)).Uuid, probe.Uuid);
        var json = Json(Valid.Value);
        File.WriteAllBytes(dir.File("init"), WithJson(Valid.Value, json.Replace("\"diskIsInitialized\":false", "\"diskIsInitialized\":true", StringComparison.Ordinal)));
        Assert.Equal(StateDiskKind.Initialized, StateDisk.Probe(dir.File("init")).Kind);
        File.WriteAllBytes(dir.File("null"), WithJson(Valid.Value, json.Replace("\"sector_size\":4096", "\"sector_size\":512", StringComparison.Ordinal)));
        var invalid = StateDisk.Probe(dir.File("null"));
        Assert.Equal((StateDiskKind.Invalid, Luks2HeaderError.UnsupportedSectorSize), (invalid.Kind, invalid.InvalidReason));
        File.WriteAllBytes(dir.File("trunc"), Valid.Value.AsSpan(0, 20000).ToArray());
        Assert.Equal(StateDiskKind.Invalid, StateDisk.Probe(dir.File("trunc")).Kind);
        Assert.Throws<Luks2HeaderException>(() => StateDisk.Open(dir.File("null")));
    }
}
