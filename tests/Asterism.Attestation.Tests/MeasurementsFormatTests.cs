namespace Asterism.Attestation.Tests;

public class MeasurementsFormatTests
{
    private static readonly string HexA = string.Concat(Enumerable.Repeat("a1", 32));
    private static readonly string HexZero = new('0', 64);

    private static Measurements Sample() => new Measurements()
        .With(4, new Measurement(Convert.FromHexString(HexA)))
        .With(14, new Measurement(Convert.FromHexString(HexA), warnOnly: true))
        .WithZeroPcr15();

    [Fact]
    public void ParseYaml_OutputOfToYaml_RoundTrips()
    {
        var parsed = MeasurementsFormat.ParseYaml(MeasurementsFormat.ToYaml(Sample()));
        AssertSame(Sample(), parsed);
    }

    [Fact]
    public void ParseJson_OutputOfToJson_RoundTrips()
    {
        var parsed = MeasurementsFormat.ParseJson(MeasurementsFormat.ToJson(Sample()));
        AssertSame(Sample(), parsed);
    }

    [Fact]
    public void ParseYaml_PlainHexAndUnquotedZeros_AreEnforced()
    {
        var parsed = MeasurementsFormat.ParseYaml($"4: {HexA}\n15: {HexZero}\n9:\n  expected: {HexA.ToUpperInvariant()}\n  warnOnly: true\n");
        Assert.False(parsed[4].WarnOnly);
        Assert.False(parsed[15].WarnOnly);
        Assert.True(parsed[9].WarnOnly);
        Assert.Equal(HexA, Convert.ToHexStringLower(parsed[9].ExpectedSpan));
        Assert.Equal(new[] { 4, 9, 15 }, parsed.Keys);
    }

    [Fact]
    public void ParseJson_PlainHex_IsEnforced()
    {
        var parsed = MeasurementsFormat.ParseJson($"{{\"11\": \"{HexZero}\", \"12\": {{\"expected\": \"{HexA}\"}}}}");
        Assert.False(parsed[11].WarnOnly);
        Assert.False(parsed[12].WarnOnly);
    }

    [Theory]
    [InlineData("4:\n  expected: abcd\n", "measurements[4].expected")]
    [InlineData("4:\n  expected: ZZ{hex62}\n", "measurements[4].expected")]
    [InlineData("4:\n  warnOnly: true\n", "measurements[4].expected: missing")]
    [InlineData("4:\n  expected: {hex}\n  warnOnly: maybe\n", "measurements[4].warnOnly")]
    [InlineData("4:\n  expected: {hex}\n  color: red\n", "measurements[4]: unknown field 'color'")]
    [InlineData("24: {hex}\n", "index '24'")]
    [InlineData("-1: {hex}\n", "index '-1'")]
    [InlineData("x: {hex}\n", "index 'x'")]
    [InlineData("4: [1, 2]\n", "measurements[4]")]
    [InlineData("- {hex}\n", "expected a mapping")]
    [InlineData("4: {hex}\n4: {hex}\n", "measurements")]
    [InlineData("4: {expected: \"{hex}\"\n", "invalid YAML")]
    public void ParseYaml_BadInput_ThrowsNamingTheField(string yaml, string expected)
    {
        yaml = yaml.Replace("{hex62}", new string('0', 62)).Replace("{hex}", HexA);
        var e = Assert.Throws<MeasurementsFormatException>(() => MeasurementsFormat.ParseYaml(yaml));
        Assert.Contains(expected, e.Message);
    }

    [Theory]
    [InlineData("{\"4\": {\"expected\": \"ab\"}}", "measurements[4].expected")]
    [InlineData("{\"4\": {\"expected\": 12}}", "measurements[4].expected")]
    [InlineData("{\"4\": {\"expected\": \"{hex}\", \"warnOnly\": \"yes\"}}", "measurements[4].warnOnly")]
    [InlineData("{\"4\": {\"expected\": \"{hex}\", \"extra\": 1}}", "measurements[4]: unknown field 'extra'")]
    [InlineData("{\"4\": \"{hex}\", \"4\": \"{hex}\"}", "measurements[4]: duplicate index")]
    [InlineData("{\"04x\": \"{hex}\"}", "index '04x'")]
    [InlineData("[1]", "expected an object")]
    [InlineData("{\"4\": true}", "measurements[4]")]
    [InlineData("{\"4\": ", "invalid JSON")]
    public void ParseJson_BadInput_ThrowsNamingTheField(string json, string expected)
    {
        var e = Assert.Throws<MeasurementsFormatException>(() => MeasurementsFormat.ParseJson(json.Replace("{hex}", HexA)));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Parse_OversizedInput_Throws()
    {
        var big = new string(' ', MeasurementsFormat.MaxInputBytes + 1);
        Assert.Contains("exceeds", Assert.Throws<MeasurementsFormatException>(() => MeasurementsFormat.ParseYaml(big)).Message);
        Assert.Contains("exceeds", Assert.Throws<MeasurementsFormatException>(() => MeasurementsFormat.ParseJson(big)).Message);
    }

    [Fact]
    public void Parse_DeeplyNestedInput_ThrowsFormatExceptionWithoutOverflow()
    {
        const int depth = 12_000;
        var yaml = "4: {" + string.Concat(Enumerable.Repeat("a: {", depth)) + "1" + new string('}', depth + 1);
        Assert.Contains("nested deeper", Assert.Throws<MeasurementsFormatException>(() => MeasurementsFormat.ParseYaml(yaml)).Message);
        var brackets = new string('[', 30_000) + new string(']', 30_000);
        Assert.Contains("nested deeper", Assert.Throws<MeasurementsFormatException>(() => MeasurementsFormat.ParseYaml(brackets)).Message);
        Assert.Throws<MeasurementsFormatException>(() => MeasurementsFormat.ParseJson(brackets));
    }

    [Fact]
    public void Parse_RandomBytes_ThrowsOnlyFormatException()
    {
        var rng = new Random(1234);
        for (var i = 0; i < 300; i++)
        {
            var bytes = new byte[rng.Next(0, 200)];
            rng.NextBytes(bytes);
            var text = System.Text.Encoding.Latin1.GetString(bytes);
            foreach (var parse in new Func<string, Measurements>[] { MeasurementsFormat.ParseYaml, MeasurementsFormat.ParseJson })
            {
                try
                {
                    parse(text);
                }
                catch (MeasurementsFormatException)
                {
                }
            }
        }
    }

    private static void AssertSame(Measurements expected, Measurements actual)
    {
        Assert.Equal(expected.Keys, actual.Keys);
        foreach (var (i, m) in expected)
        {
            Assert.True(m.ExpectedSpan.SequenceEqual(actual[i].ExpectedSpan));
            Assert.Equal(m.WarnOnly, actual[i].WarnOnly);
        }
    }
}
