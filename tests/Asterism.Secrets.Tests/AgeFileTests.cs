using System.Text;

namespace Asterism.Secrets.Tests;

public class AgeFileTests
{
    [Theory]
    [InlineData(0, false)]
    [InlineData(1, false)]
    [InlineData(64 * 1024, false)]
    [InlineData(64 * 1024 + 1, true)]
    [InlineData(200_000, true)]
    public void Decrypt_OwnFile_ReturnsPlaintext(int length, bool armor)
    {
        using var identity = AgeIdentity.Generate();
        var plaintext = Enumerable.Range(0, length).Select(i => (byte)i).ToArray();
        var file = AgeFile.Encrypt(plaintext, [identity.Recipient], armor);
        Assert.Equal(plaintext, AgeFile.Decrypt(file, [identity]));
    }

    [Fact]
    public void Decrypt_SecondRecipient_OpensWithItsIdentity()
    {
        using var alice = AgeIdentity.Generate();
        using var bob = AgeIdentity.Generate();
        var file = AgeFile.Encrypt("hello"u8, [alice.Recipient, bob.Recipient]);
        Assert.Equal("hello"u8.ToArray(), AgeFile.Decrypt(file, [bob]));
    }

    [Fact]
    public void Decrypt_WrongIdentity_Refused()
    {
        using var alice = AgeIdentity.Generate();
        using var mallory = AgeIdentity.Generate();
        var file = AgeFile.Encrypt("hello"u8, [alice.Recipient]);
        var ex = Assert.Throws<AgeException>(() => AgeFile.Decrypt(file, [mallory]));
        Assert.Contains("none of the given identities", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decrypt_HeaderModified_RefusedByMac()
    {
        using var alice = AgeIdentity.Generate();
        var file = AgeFile.Encrypt("hello"u8, [alice.Recipient]);
        // A second stanza the MAC does not cover: the file key still unwraps, the MAC must catch it.
        var text = Encoding.ASCII.GetString(file);
        var at = text.IndexOf("---", StringComparison.Ordinal);
        var modified = Encoding.ASCII.GetBytes(text[..at] + "-> extra\n\n").Concat(file.Skip(at)).ToArray();
        var ex = Assert.Throws<AgeException>(() => AgeFile.Decrypt(modified, [alice]));
        Assert.Contains("header MAC", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decrypt_PayloadBitFlipped_Refused()
    {
        using var alice = AgeIdentity.Generate();
        var file = AgeFile.Encrypt("hello"u8, [alice.Recipient]);
        file[^3] ^= 1;
        var ex = Assert.Throws<AgeException>(() => AgeFile.Decrypt(file, [alice]));
        Assert.Contains("chunk 0 does not authenticate", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decrypt_LastChunkDropped_Refused()
    {
        using var alice = AgeIdentity.Generate();
        var file = AgeFile.Encrypt(new byte[70_000], [alice.Recipient]);
        // Cut after the first full chunk: the first chunk was sealed as "not last", so it must not pass as the end.
        var cut = file.Length - (70_000 - 65536 + 16);
        var ex = Assert.Throws<AgeException>(() => AgeFile.Decrypt(file.AsSpan(0, cut), [alice]));
        Assert.Contains("does not authenticate", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", "the file is empty")]
    [InlineData("hello world\n", "not an age file")]
    [InlineData("age-encryption.org/v2\n", "unsupported age format version")]
    [InlineData("age-encryption.org/v1\n", "truncated")]
    [InlineData("age-encryption.org/v1\n--- AAAA\n", "malformed header MAC")]
    [InlineData("age-encryption.org/v1\n-> X25519 AAAA\n", "truncated")]
    [InlineData("age-encryption.org/v1\nfoo\n", "malformed header line")]
    [InlineData("-----BEGIN AGE ENCRYPTED FILE-----\n!!!!\n-----END AGE ENCRYPTED FILE-----\n", "invalid base64")]
    [InlineData("-----BEGIN AGE ENCRYPTED FILE-----\nYWJj\n", "malformed armor")]
    public void Decrypt_Malformed_ClearError(string content, string expected)
    {
        using var alice = AgeIdentity.Generate();
        var ex = Assert.Throws<AgeException>(() => AgeFile.Decrypt(Encoding.ASCII.GetBytes(content), [alice]));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decrypt_OversizedFile_RefusedBeforeParsing()
    {
        using var alice = AgeIdentity.Generate();
        var ex = Assert.Throws<AgeException>(() => AgeFile.Decrypt(new byte[AgeFile.DefaultMaxFileSize + 1], [alice]));
        Assert.Contains("larger than", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decrypt_EndlessHeaderLine_RefusedAtLimit()
    {
        using var alice = AgeIdentity.Generate();
        var file = Encoding.ASCII.GetBytes("age-encryption.org/v1\n-> " + new string('a', 100_000) + "\n");
        var ex = Assert.Throws<AgeException>(() => AgeFile.Decrypt(file, [alice]));
        Assert.Contains("header is larger", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decrypt_TooManyStanzas_Refused()
    {
        using var alice = AgeIdentity.Generate();
        var file = Encoding.ASCII.GetBytes("age-encryption.org/v1\n" + string.Concat(Enumerable.Repeat("-> x\n\n", 100)));
        var ex = Assert.Throws<AgeException>(() => AgeFile.Decrypt(file, [alice]));
        Assert.Contains("more than 64 stanzas", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decrypt_RandomBytes_ClearError()
    {
        using var alice = AgeIdentity.Generate();
        var random = new Random(16);
        for (var i = 0; i < 200; i++)
        {
            var bytes = new byte[random.Next(0, 600)];
            random.NextBytes(bytes);
            var prefixed = i % 2 == 0 ? bytes : Encoding.ASCII.GetBytes(AgeFile.Intro + "\n").Concat(bytes).ToArray();
            Assert.Throws<AgeException>(() => AgeFile.Decrypt(prefixed, [alice]));
        }
    }

    [Fact]
    public void Decrypt_FileWrittenByAge_ReturnsPlaintext()
    {
        using var tool = new AgeTool();
        using var identity = AgeIdentity.Generate();
        File.WriteAllText(tool.PathOf("plain"), "written by age\n");
        var (code, _, stderr) = tool.Run("age", "-e", "-r", identity.Recipient.ToString(), "-o", tool.PathOf("out.age"), tool.PathOf("plain"));
        Assert.True(code == 0, stderr);
        Assert.Equal("written by age\n", Encoding.ASCII.GetString(AgeFile.Decrypt(File.ReadAllBytes(tool.PathOf("out.age")), [identity])));
    }

    [Fact]
    public void Decrypt_ArmoredLargeFileWrittenByAge_ReturnsPlaintext()
    {
        using var tool = new AgeTool();
        using var identity = AgeIdentity.Generate();
        var plaintext = Enumerable.Range(0, 150_000).Select(i => (byte)(i * 7)).ToArray();
        File.WriteAllBytes(tool.PathOf("plain"), plaintext);
        var (code, _, stderr) = tool.Run("age", "-e", "-a", "-r", identity.Recipient.ToString(), "-o", tool.PathOf("out.age"), tool.PathOf("plain"));
        Assert.True(code == 0, stderr);
        Assert.Equal(plaintext, AgeFile.Decrypt(File.ReadAllBytes(tool.PathOf("out.age")), [identity]));
    }

    [Theory]
    [InlineData(false, 10)]
    [InlineData(true, 10)]
    [InlineData(false, 65536)]
    [InlineData(true, 140_000)]
    public void Encrypt_AgeDecryptsWithKeygenIdentity(bool armor, int length)
    {
        using var tool = new AgeTool();
        var (code, _, stderr) = tool.Run("age-keygen", "-o", tool.PathOf("key.txt"));
        Assert.True(code == 0, stderr);
        var identities = AgeIdentity.ParseFile(File.ReadAllBytes(tool.PathOf("key.txt")), "key.txt");
        var (yCode, recipientText, _) = tool.Run("age-keygen", "-y", tool.PathOf("key.txt"));
        Assert.Equal(0, yCode);
        var recipient = AgeRecipient.Parse(Encoding.ASCII.GetString(recipientText));
        Assert.Equal(identities[0].Recipient.ToString(), recipient.ToString());
        var plaintext = Enumerable.Range(0, length).Select(i => (byte)(i * 13)).ToArray();
        File.WriteAllBytes(tool.PathOf("ours.age"), AgeFile.Encrypt(plaintext, [recipient], armor));
        var (dCode, decrypted, dErr) = tool.Run("age", "-d", "-i", tool.PathOf("key.txt"), tool.PathOf("ours.age"));
        Assert.True(dCode == 0, dErr);
        Assert.Equal(plaintext, decrypted);
    }

    [Fact]
    public void Encode_IdentityRoundTrips_AndAgeAcceptsIt()
    {
        using var tool = new AgeTool();
        using var identity = AgeIdentity.Generate();
        File.WriteAllText(tool.PathOf("key.txt"), "# created by us\n" + identity.Encode() + "\n");
        var (code, recipient, stderr) = tool.Run("age-keygen", "-y", tool.PathOf("key.txt"));
        Assert.True(code == 0, stderr);
        Assert.Equal(identity.Recipient.ToString(), Encoding.ASCII.GetString(recipient).Trim());
    }
}
