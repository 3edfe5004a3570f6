using System.Text;
using System.Text.Json.Nodes;

namespace Asterism.Secrets.Tests;

public class SecretSharesTests
{
    private static readonly string ClusterId = new('a', 64);
    private static readonly string OtherClusterId = new('b', 64);
    private static readonly byte[] Secret = Encoding.ASCII.GetBytes("{\"key\":\"master key bytes\",\"salt\":\"and the salt of it all\"}");

    private static List<SecretShare> RoundTrip(IEnumerable<SecretShare> shares) =>
        [.. shares.Select(s => { var share = SecretShare.Parse(s.ToJson()); share.Source = $"file{s.Index}"; return share; })];

    [Fact]
    public void Combine_AnyThreeOfFive_RebuildsSecret()
    {
        var shares = RoundTrip(SecretShares.Split(Secret, ClusterId, 3, 5));
        int[][] subsets = [[0, 1, 2], [0, 2, 4], [4, 3, 1], [1, 2, 3, 4], [0, 1, 2, 3, 4]];
        foreach (var subset in subsets)
        {
            Assert.Equal(Secret, SecretShares.Combine([.. subset.Select(i => shares[i])], ClusterId));
        }
    }

    [Fact]
    public void Combine_ThresholdMinusOne_RefusedWithCount()
    {
        var shares = RoundTrip(SecretShares.Split(Secret, ClusterId, 3, 5));
        var ex = Assert.Throws<ShareException>(() => SecretShares.Combine([shares[0], shares[3]], ClusterId));
        Assert.Equal("need 3 shares, have 2", ex.Message);
    }

    [Fact]
    public void Combine_TamperedValue_NamedByIndex()
    {
        var shares = RoundTrip(SecretShares.Split(Secret, ClusterId, 3, 5));
        var json = JsonNode.Parse(shares[1].ToJson())!;
        var value = json["value"]!.GetValue<string>();
        json["value"] = (value[0] == '0' ? "1" : "0") + value[1..];
        var tampered = SecretShare.Parse(Encoding.UTF8.GetBytes(json.ToJsonString()));
        tampered.Source = "bob.age";
        var ex = Assert.Throws<ShareException>(() => SecretShares.Combine([shares[0], tampered, shares[2]], ClusterId));
        Assert.Equal("share 2 (bob.age) does not match the commitments", ex.Message);
    }

    [Fact]
    public void Combine_ForeignShareOfSameClusterAndIndex_NamedAsOtherSplit()
    {
        var ours = RoundTrip(SecretShares.Split(Secret, ClusterId, 3, 5));
        var theirs = RoundTrip(SecretShares.Split("another secret"u8, ClusterId, 3, 5));
        theirs[2].Source = "mallory.age";
        var ex = Assert.Throws<ShareException>(() => SecretShares.Combine([ours[0], ours[1], theirs[2]], ClusterId));
        Assert.Equal("share 3 (mallory.age) is not from the same split as share 1 (file1) (its commitments or sealed secret differ)", ex.Message);
    }

    [Fact]
    public void Combine_ForgedCommitmentsTwoAgainstTwo_RefusesWithoutGuessing()
    {
        var ours = RoundTrip(SecretShares.Split(Secret, ClusterId, 2, 3));
        var theirs = RoundTrip(SecretShares.Split("forged"u8, ClusterId, 2, 3));
        var ex = Assert.Throws<ShareException>(() => SecretShares.Combine([ours[0], theirs[1]], ClusterId));
        Assert.Contains("come from different splits", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Combine_ShareOfAnotherCluster_Refused()
    {
        var shares = RoundTrip(SecretShares.Split(Secret, OtherClusterId, 3, 5));
        var ex = Assert.Throws<ShareException>(() => SecretShares.Combine([.. shares.Take(3)], ClusterId));
        Assert.StartsWith("share 1 (file1) belongs to cluster bbbbbbbbbbbbbbbb…, not to this cluster aaaaaaaaaaaaaaaa…", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Combine_DuplicateIndex_Refused()
    {
        var shares = RoundTrip(SecretShares.Split(Secret, ClusterId, 3, 5));
        var again = SecretShare.Parse(shares[0].ToJson());
        again.Source = "copy.age";
        var ex = Assert.Throws<ShareException>(() => SecretShares.Combine([shares[0], again, shares[1]], ClusterId));
        Assert.Equal("share 1 was given twice (file1 and copy.age); give each share once", ex.Message);
    }

    [Fact]
    public void Combine_SealedSecretTamperedInEveryShare_Refused()
    {
        var shares = SecretShares.Split(Secret, ClusterId, 2, 2);
        var tampered = shares.Select(s =>
        {
            var json = JsonNode.Parse(s.ToJson())!;
            var sealedBytes = Convert.FromBase64String(json["sealedSecret"]!.GetValue<string>());
            sealedBytes[0] ^= 1;
            json["sealedSecret"] = Convert.ToBase64String(sealedBytes);
            return SecretShare.Parse(Encoding.UTF8.GetBytes(json.ToJsonString()));
        }).ToList();
        var ex = Assert.Throws<ShareException>(() => SecretShares.Combine(tampered, ClusterId));
        Assert.Contains("do not open the sealed secret", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1, 3, "--threshold must be at least 2")]
    [InlineData(4, 3, "--threshold 4 is greater than --shares 3")]
    [InlineData(2, 1, "--shares must be 2..255")]
    [InlineData(2, 256, "--shares must be 2..255")]
    public void Split_BadCounts_Refused(int threshold, int count, string expected)
    {
        var ex = Assert.Throws<ShareException>(() => SecretShares.Split(Secret, ClusterId, threshold, count));
        Assert.StartsWith(expected, ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("version", "3", "share format version 3 is not supported (this asterism reads versions 1 to 2)")]
    [InlineData("generation", "0", "field \"generation\" is 0, outside 1..1000000")]
    [InlineData("format", "\"something-else\"", "not an Asterism secret share")]
    [InlineData("threshold", "1", "field \"threshold\" is 1, outside 2..5")]
    [InlineData("index", "6", "field \"index\" is 6, outside 1..5")]
    [InlineData("clusterId", "\"ABC\"", "clusterId must be 64 lowercase hex digits")]
    [InlineData("value", "\"00\"", "value must be 64 hex digits")]
    [InlineData("group", "\"ed25519\"", "group must be secp256k1")]
    [InlineData("commitments", "[]", "commitments must be an array of 3 points (one per coefficient)")]
    public void Parse_BadField_ClearError(string field, string replacement, string expected)
    {
        var share = SecretShares.Split(Secret, ClusterId, 3, 5)[0];
        var json = JsonNode.Parse(share.ToJson())!;
        json[field] = JsonNode.Parse(replacement);
        var ex = Assert.Throws<ShareException>(() => SecretShare.Parse(Encoding.UTF8.GetBytes(json.ToJsonString())));
        Assert.Equal(expected, ex.Message);
    }

    [Fact]
    public void Parse_CommitmentNotOnCurve_Refused()
    {
        var share = SecretShares.Split(Secret, ClusterId, 3, 5)[0];
        var json = JsonNode.Parse(share.ToJson())!;
        json["commitments"]![1] = "02" + new string('f', 64);
        var ex = Assert.Throws<ShareException>(() => SecretShare.Parse(Encoding.UTF8.GetBytes(json.ToJsonString())));
        Assert.Equal("commitment 1 is not a secp256k1 point", ex.Message);
    }

    [Fact]
    public void Parse_RandomBytes_ClearError()
    {
        var random = new Random(7);
        for (var i = 0; i < 200; i++)
        {
            var bytes = new byte[random.Next(0, 300)];
            random.NextBytes(bytes);
            Assert.Throws<ShareException>(() => SecretShare.Parse(bytes));
        }
        Assert.Throws<ShareException>(() => SecretShare.Parse(new byte[SecretShare.MaxJsonSize + 1]));
    }

    [Fact]
    public void ToString_Share_NeverShowsValue()
    {
        var share = SecretShares.Split(Secret, ClusterId, 2, 2)[0];
        var value = JsonNode.Parse(share.ToJson())!["value"]!.GetValue<string>();
        Assert.DoesNotContain(value, share.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Verify_EveryDealtShare_MatchesCommitments_AndAnotherIndexDoesNot()
    {
        var (secret, commitments, values) = Feldman.Deal(3, 4);
        Assert.Equal(32, secret.Length);
        for (var i = 0; i < values.Count; i++)
        {
            Assert.True(Feldman.Verify(commitments, i + 1, values[i]));
            Assert.False(Feldman.Verify(commitments, i + 2, values[i]));
        }
    }
}
