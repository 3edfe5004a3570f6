using System.Text;

namespace Asterism.Secrets.Tests;

public class AgeKeysTests
{
    [Fact]
    public void Parse_Recipient_RoundTrips()
    {
        using var identity = AgeIdentity.Generate();
        var text = identity.Recipient.ToString();
        Assert.StartsWith("age1", text, StringComparison.Ordinal);
        Assert.Equal(62, text.Length);
        Assert.Equal(text, AgeRecipient.Parse(text).ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("age1")]
    [InlineData("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL0")]
    [InlineData("age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq")]
    public void Parse_BadRecipient_ClearError(string text)
    {
        var ex = Assert.Throws<AgeException>(() => AgeRecipient.Parse(text));
        Assert.Contains("is not an age X25519 recipient", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_RecipientWithFlippedCharacter_FailsChecksum()
    {
        using var identity = AgeIdentity.Generate();
        var text = identity.Recipient.ToString().ToCharArray();
        text[10] = text[10] == 'q' ? 'p' : 'q';
        Assert.Throws<AgeException>(() => AgeRecipient.Parse(new string(text)));
    }

    [Fact]
    public void Parse_MixedCaseRecipient_Refused()
    {
        using var identity = AgeIdentity.Generate();
        var text = identity.Recipient.ToString();
        Assert.Throws<AgeException>(() => AgeRecipient.Parse(text[..10].ToUpperInvariant() + text[10..]));
    }

    [Fact]
    public void ParseFile_CommentsAndBlankLines_ReadsEveryIdentity()
    {
        using var a = AgeIdentity.Generate();
        using var b = AgeIdentity.Generate();
        var file = $"# created: now\n# public key: {a.Recipient}\n{a.Encode()}\n\n{b.Encode()}\r\n";
        var identities = AgeIdentity.ParseFile(Encoding.ASCII.GetBytes(file), "keys.txt");
        Assert.Equal([a.Recipient.ToString(), b.Recipient.ToString()], identities.Select(i => i.Recipient.ToString()));
    }

    [Fact]
    public void ParseFile_GarbageLine_NamesLineNotContents()
    {
        using var a = AgeIdentity.Generate();
        var secretish = a.Encode()[..30];
        var ex = Assert.Throws<AgeException>(() => AgeIdentity.ParseFile(Encoding.ASCII.GetBytes($"# ok\n{secretish}\n"), "keys.txt"));
        Assert.Equal("identity file keys.txt line 2 is not an age X25519 identity (AGE-SECRET-KEY-1…)", ex.Message);
        Assert.DoesNotContain(secretish, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ParseFile_Empty_Refused()
    {
        var ex = Assert.Throws<AgeException>(() => AgeIdentity.ParseFile("# nothing\n"u8, "keys.txt"));
        Assert.Contains("holds no age identity", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ParseFile_Oversized_Refused()
    {
        Assert.Throws<AgeException>(() => AgeIdentity.ParseFile(new byte[AgeIdentity.MaxFileSize + 1], "keys.txt"));
    }

    [Fact]
    public void ToString_Identity_Redacted()
    {
        using var identity = AgeIdentity.Generate();
        Assert.Equal("[redacted]", identity.ToString());
    }
}
