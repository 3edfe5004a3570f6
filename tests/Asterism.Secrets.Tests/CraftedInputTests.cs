using System.Text;
using System.Text.Json.Nodes;

namespace Asterism.Secrets.Tests;

/// <summary>
/// The attacker hands the operator a crafted share file (or an age file around one). Whatever the bytes, the parsers
/// answer with their own exception and one line; nothing crashes with another exception, hangs, or combines into a
/// secret other than the one that was split, and no message repeats a share value, an identity or the secret.
/// The mutation runs are seeded (reproducible) and bounded by iteration count, not by time.
/// </summary>
public class CraftedInputTests
{
    private static readonly string ClusterId = new('c', 64);
    private static readonly byte[] Secret = Encoding.ASCII.GetBytes("{\"key\":\"the master key of the cluster\",\"salt\":\"its salt\"}");
    private const int Mutations = 3000;

    private static readonly AgeIdentity Holder = AgeIdentity.Generate();

    private static List<SecretShare> Split(int threshold = 3, int count = 5) =>
        [.. SecretShares.Split(Secret, ClusterId, threshold, count).Select(s => SecretShare.Parse(s.ToJson()))];

    /// <summary>Everything no error text may contain: the share values, the identity, the secret.</summary>
    private static IEnumerable<string> Secrets(IEnumerable<SecretShare> shares) =>
        shares.Select(s => JsonNode.Parse(s.ToJson())!["value"]!.GetValue<string>())
            .Append(Holder.Encode())
            .Append(Encoding.ASCII.GetString(Secret))
            .Append("the master key");

    private static void AssertClean(Exception ex, IEnumerable<string> secrets)
    {
        Assert.True(ex is ShareException or AgeException, $"{ex.GetType().Name} escaped the parser: {ex}");
        Assert.DoesNotContain('\n', ex.Message);
        foreach (var secret in secrets)
        {
            Assert.DoesNotContain(secret, ex.Message, StringComparison.OrdinalIgnoreCase);
        }
    }

    private static byte[] Mutate(byte[] input, Random random)
    {
        var bytes = new List<byte>(input);
        var edits = random.Next(1, 4);
        for (var e = 0; e < edits && bytes.Count > 0; e++)
        {
            var at = random.Next(bytes.Count);
            switch (random.Next(7))
            {
                case 0:
                    bytes[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1:
                    bytes[at] = (byte)random.Next(256);
                    break;
                case 2:
                    bytes.RemoveRange(at, Math.Min(random.Next(1, 64), bytes.Count - at));
                    break;
                case 3:
                    bytes.InsertRange(at, Enumerable.Repeat((byte)random.Next(256), random.Next(1, 64)));
                    break;
                case 4:
                    bytes.RemoveRange(at, bytes.Count - at);
                    break;
                case 5:
                    // Repeat a region: duplicated stanzas, fields, lines.
                    var length = Math.Min(random.Next(1, 200), bytes.Count - at);
                    bytes.InsertRange(random.Next(bytes.Count), bytes.GetRange(at, length));
                    break;
                default:
                    // Interesting bytes of the formats: digits, separators, newlines.
                    var chars = "0123456789-e+.\"{}[],:\n -> ="u8;
                    bytes[at] = chars[random.Next(chars.Length)];
                    break;
            }
        }
        return [.. bytes];
    }

    [Fact]
    public void Parse_MutatedShareJson_ShareExceptionOrAShareThatNeverCombinesIntoAnotherSecret()
    {
        var shares = Split();
        var secrets = Secrets(shares).ToList();
        var seeds = shares.Select(s => s.ToJson()).ToList();
        var random = new Random(16);
        var parsed = 0;
        for (var i = 0; i < Mutations; i++)
        {
            var target = random.Next(seeds.Count);
            var mutated = Mutate(seeds[target], random);
            SecretShare share;
            try
            {
                share = SecretShare.Parse(mutated);
            }
            catch (Exception ex)
            {
                AssertClean(ex, secrets);
                continue;
            }
            parsed++;
            // A mutation that still parses (whitespace, a value digit, a commitment...) combined with two good
            // shares gives the original secret or a ShareException, never other bytes.
            List<SecretShare> set = [share, .. shares.Where((_, j) => j != target).Take(2)];
            try
            {
                Assert.Equal(Secret, SecretShares.Combine(set, ClusterId));
            }
            catch (Exception ex) when (ex is not Xunit.Sdk.XunitException)
            {
                AssertClean(ex, secrets);
            }
        }
        Assert.True(parsed > 0, "no mutation parsed: the combine half of this test never ran");
    }

    [Fact]
    public void Decrypt_MutatedAgeFiles_AgeExceptionOrTheOriginalPlaintext()
    {
        var shares = Split();
        var secrets = Secrets(shares).ToList();
        var plaintext = shares[0].ToJson();
        var others = new[] { AgeIdentity.Generate().Recipient, AgeIdentity.Generate().Recipient };
        byte[][] seeds =
        [
            AgeFile.Encrypt(plaintext, [Holder.Recipient]),
            AgeFile.Encrypt(plaintext, [others[0], Holder.Recipient, others[1]]),
            AgeFile.Encrypt(plaintext, [Holder.Recipient], armor: true),
        ];
        var random = new Random(17);
        for (var i = 0; i < Mutations; i++)
        {
            var mutated = Mutate(seeds[random.Next(seeds.Length)], random);
            try
            {
                // The header MAC and the payload tags cover every byte: what decrypts is what was encrypted.
                Assert.Equal(plaintext, AgeFile.Decrypt(mutated, [Holder]));
            }
            catch (Exception ex) when (ex is not Xunit.Sdk.XunitException)
            {
                AssertClean(ex, secrets);
            }
        }
    }

    [Fact]
    public void Parse_MutatedKeysAndRecipients_AgeExceptionOnly()
    {
        var identity = Holder.Encode();
        var recipient = Holder.Recipient.ToString();
        var random = new Random(18);
        for (var i = 0; i < Mutations; i++)
        {
            var text = Encoding.Latin1.GetString(Mutate(Encoding.ASCII.GetBytes(i % 2 == 0 ? identity : recipient), random));
            try
            {
                if (i % 2 == 0)
                {
                    using var parsed = AgeIdentity.Parse(text);
                }
                else
                {
                    AgeRecipient.Parse(text);
                }
            }
            catch (Exception ex)
            {
                AssertClean(ex, [identity]);
            }
            Assert.Null(Record.Exception(() => Bech32.Decode(text, "age")));
        }
    }

    [Theory]
    [InlineData(10_000)]
    [InlineData(1_000_000)]
    public void Parse_DeeplyNestedJson_ShareExceptionNotStackOverflow(int depth)
    {
        var json = Encoding.ASCII.GetBytes(new string('[', depth) + new string(']', depth));
        Assert.Throws<ShareException>(() => SecretShare.Parse(json));
        var nested = Encoding.ASCII.GetBytes("{\"format\":\"asterism-secret-share\",\"x\":" + new string('[', 5000) + new string(']', 5000) + "}");
        Assert.Equal("not valid JSON: not an Asterism secret share", Assert.Throws<ShareException>(() => SecretShare.Parse(nested)).Message);
    }

    [Theory]
    [InlineData("threshold", "1e400")]
    [InlineData("threshold", "99999999999999999999999999999999")]
    [InlineData("shares", "-1")]
    [InlineData("index", "0")]
    [InlineData("index", "1.5")]
    [InlineData("version", "1e1")]
    [InlineData("threshold", "1")]
    [InlineData("threshold", "\"3\"")]
    public void Parse_HostileNumbers_ClearError(string field, string number)
    {
        var json = JsonNode.Parse(Split()[0].ToJson())!;
        json[field] = JsonNode.Parse(number);
        var ex = Assert.Throws<ShareException>(() => SecretShare.Parse(Encoding.UTF8.GetBytes(json.ToJsonString())));
        Assert.Contains(field, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_ThresholdLoweredToOneWithOneCommitment_Refused()
    {
        // Threshold 1 would make a single (forged) share the whole secret: refused even with a matching commitment list.
        var json = JsonNode.Parse(Split()[0].ToJson())!;
        json["threshold"] = 1;
        json["commitments"] = new JsonArray(json["commitments"]![0]!.GetValue<string>());
        var ex = Assert.Throws<ShareException>(() => SecretShare.Parse(Encoding.UTF8.GetBytes(json.ToJsonString())));
        Assert.Equal("field \"threshold\" is 1, outside 2..5", ex.Message);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void Parse_CommitmentCountNotTheThreshold_Refused(int commitments)
    {
        var json = JsonNode.Parse(Split()[0].ToJson())!;
        var list = json["commitments"]!.AsArray();
        json["commitments"] = new JsonArray([.. Enumerable.Range(0, commitments).Select(i => (JsonNode)list[i % list.Count]!.GetValue<string>())]);
        var ex = Assert.Throws<ShareException>(() => SecretShare.Parse(Encoding.UTF8.GetBytes(json.ToJsonString())));
        Assert.Equal("commitments must be an array of 3 points (one per coefficient)", ex.Message);
    }

    [Fact]
    public void Combine_LoweredThresholdWithConsistentCommitments_RefusedAsAnotherSplit()
    {
        // The attacker rewrites one share to a 2-of-5 split with two of its commitments: it no longer matches the
        // others' split fingerprint, so combining names it instead of interpolating a wrong polynomial.
        var shares = Split();
        var json = JsonNode.Parse(shares[2].ToJson())!;
        json["threshold"] = 2;
        var list = json["commitments"]!.AsArray();
        json["commitments"] = new JsonArray(list[0]!.GetValue<string>(), list[1]!.GetValue<string>());
        var forged = SecretShare.Parse(Encoding.UTF8.GetBytes(json.ToJsonString()));
        var ex = Assert.Throws<ShareException>(() => SecretShares.Combine([shares[0], shares[1], forged], ClusterId));
        Assert.Equal("share 3 is not from the same split as share 1 (its commitments or sealed secret differ)", ex.Message);
    }

    [Fact]
    public void Combine_SharesOfTwoSplitsOfTheSameSecret_Refused()
    {
        var first = Split(2, 3);
        var second = Split(2, 3);
        var ex = Assert.Throws<ShareException>(() => SecretShares.Combine([first[0], second[1]], ClusterId));
        Assert.Contains("come from different splits", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_ShareOfExactlyTheSizeLimit_ClearError()
    {
        var padded = Split()[0].ToJson().Concat(Enumerable.Repeat((byte)' ', SecretShare.MaxJsonSize)).Take(SecretShare.MaxJsonSize).ToArray();
        // Within the limit the whitespace is JSON: the share parses.
        using var share = SecretShare.Parse(padded);
        Assert.Throws<ShareException>(() => SecretShare.Parse([.. padded, (byte)' ']));
    }

    [Fact]
    public void Decrypt_StanzaBodyNotThirtyTwoBytes_Refused()
    {
        var file = Encoding.ASCII.GetString(AgeFile.Encrypt("x"u8, [Holder.Recipient]));
        var lines = file.Split('\n');
        // Line 2 is the X25519 stanza's body (32 bytes, 43 base64 characters): make it 31 and 33 bytes.
        foreach (var body in new[] { lines[2][..40] + "AA", lines[2] + "AA" })
        {
            var forged = string.Join('\n', lines.Take(2).Append(body).Concat(lines.Skip(3)));
            var ex = Assert.Throws<AgeException>(() => AgeFile.Decrypt(Encoding.Latin1.GetBytes(forged), [Holder]));
            Assert.Contains("stanza", ex.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Decrypt_LowOrderShareInStanza_Refused()
    {
        var file = Encoding.ASCII.GetString(AgeFile.Encrypt("x"u8, [Holder.Recipient]));
        var lines = file.Split('\n');
        // The all-zero point: X25519 with it gives zero, which would make the wrap key public.
        lines[1] = "-> X25519 " + Convert.ToBase64String(new byte[32]).TrimEnd('=');
        var ex = Assert.Throws<AgeException>(() => AgeFile.Decrypt(Encoding.ASCII.GetBytes(string.Join('\n', lines)), [Holder]));
        Assert.Equal("X25519 stanza with a low-order share: the file is malformed or hostile", ex.Message);
    }

    [Fact]
    public void Decrypt_ManyForeignStanzasAndManyIdentities_BoundedRefusal()
    {
        // 64 stanzas (the limit) to other recipients, tried with 64 identities: 4096 agreements, then one refusal.
        var recipients = Enumerable.Range(0, 64).Select(_ => AgeIdentity.Generate().Recipient).ToList();
        var file = AgeFile.Encrypt("x"u8, recipients);
        var identities = Enumerable.Range(0, 64).Select(_ => AgeIdentity.Generate()).ToList();
        var ex = Assert.Throws<AgeException>(() => AgeFile.Decrypt(file, identities));
        Assert.Equal("none of the given identities opens this file (it was encrypted to another recipient)", ex.Message);
        var more = AgeFile.Encrypt("x"u8, [.. recipients, Holder.Recipient]);
        Assert.Equal($"the header has more than 64 stanzas", Assert.Throws<AgeException>(() => AgeFile.Decrypt(more, [Holder])).Message);
    }

    [Fact]
    public void Decrypt_HeaderOfManyLongUnknownStanzas_RefusedAtHeaderLimit()
    {
        var header = new StringBuilder(AgeFile.Intro + "\n");
        while (header.Length < 20_000)
        {
            header.Append("-> unknown ").Append(new string('a', 40)).Append('\n').Append(new string('A', 43)).Append('\n');
        }
        var ex = Assert.Throws<AgeException>(() => AgeFile.Decrypt(Encoding.ASCII.GetBytes(header.ToString()), [Holder]));
        Assert.True(ex.Message is "the header is larger than 16384 bytes" or "the header has more than 64 stanzas", ex.Message);
    }

    [Fact]
    public void Decrypt_ArmorOfHugeBody_RefusedBeforeDecoding()
    {
        var armored = Encoding.ASCII.GetBytes(AgeFile.ArmorBegin + "\n" + string.Concat(Enumerable.Repeat(new string('A', 64) + "\n", 20_000)) + AgeFile.ArmorEnd + "\n");
        var ex = Assert.Throws<AgeException>(() => AgeFile.Decrypt(armored, [Holder]));
        Assert.Equal($"the file is larger than {AgeFile.DefaultMaxFileSize} bytes", ex.Message);
    }

    [Theory]
    [InlineData("c3")]
    [InlineData("04")]
    [InlineData("00")]
    public void Parse_CommitmentWithBadPrefixByte_ShareException(string prefix)
    {
        // Found by the mutation run: BouncyCastle's DecodePoint throws FormatException for an unknown prefix byte.
        var json = JsonNode.Parse(Split()[0].ToJson())!;
        json["commitments"]![1] = prefix + json["commitments"]![1]!.GetValue<string>()[2..];
        var ex = Assert.Throws<ShareException>(() => SecretShare.Parse(Encoding.UTF8.GetBytes(json.ToJsonString())));
        Assert.Equal("commitment 1 is not a secp256k1 point", ex.Message);
    }

    [Fact]
    public void Parse_InvalidUtf8InAStringField_ShareException()
    {
        // Found by the mutation run: JsonDocument accepts the bytes, GetString threw InvalidOperationException, which
        // no caller catches (the CLI would die with a stack trace on a crafted share).
        var json = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(Split()[0].ToJson()).Replace("\"asterism-secret-share\"", "\"asterism-secret-share\",\"x\":\"\u00ff\"", StringComparison.Ordinal));
        var at = Array.IndexOf(json, (byte)0xC3);
        json[at] = 0xD0;
        json[at + 1] = (byte)'"';
        json[at + 2] = (byte)' ';
        var ex = Assert.Throws<ShareException>(() => SecretShare.Parse(json));
        Assert.Equal("not valid UTF-8: not an Asterism secret share", ex.Message);
    }

    [Fact]
    public void Parse_LoneSurrogateEscape_ShareException()
    {
        var json = JsonNode.Parse(Split()[0].ToJson())!;
        var text = json.ToJsonString().Replace("\"group\":\"secp256k1\"", "\"group\":\"secp256k1\\ud800\"", StringComparison.Ordinal);
        var ex = Assert.Throws<ShareException>(() => SecretShare.Parse(Encoding.UTF8.GetBytes(text)));
        Assert.Equal("a string field is not valid Unicode: not an Asterism secret share", ex.Message);
    }

    [Fact]
    public void ParseRecipient_ControlCharacters_NotEchoedToTheTerminal()
    {
        var ex = Assert.Throws<AgeException>(() => AgeRecipient.Parse("age1\n\u001b[2J\rError: fo"));
        Assert.Equal("\"age1??[2J?Error:?fo\" is not an age X25519 recipient (age1…, 62 characters)", ex.Message);
        Assert.DoesNotContain(ex.Message, c => c < ' ' || c == (char)127);
    }
}
