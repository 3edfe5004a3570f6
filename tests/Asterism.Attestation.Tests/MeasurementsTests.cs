namespace Asterism.Attestation.Tests;

public class MeasurementsTests
{
    private static byte[] Filled(byte b) => Enumerable.Repeat(b, 32).ToArray();

    private static Dictionary<int, byte[]> Actual(params (int Index, byte Fill)[] values) =>
        values.ToDictionary(v => v.Index, v => Filled(v.Fill));

    [Fact]
    public void Compare_AllMatch_Passes()
    {
        var m = new Measurements().With(4, new Measurement(Filled(4))).With(9, new Measurement(Filled(9)));
        var result = m.Compare(Actual((4, 4), (9, 9), (10, 77)));
        Assert.True(result.Passed);
        Assert.Empty(result.Warnings);
    }

    [Fact]
    public void Compare_EnforcedMismatch_FailsWithUntrustedValueMessage()
    {
        var m = new Measurements().With(4, new Measurement(Filled(4)));
        var result = m.Compare(Actual((4, 0xab)));
        Assert.False(result.Passed);
        Assert.Equal($"untrusted measurement value {string.Concat(Enumerable.Repeat("ab", 32))} at index 4", Assert.Single(result.Errors));
        Assert.StartsWith("measurement validation failed:\n", result.ErrorText);
    }

    [Fact]
    public void Compare_MissingValue_FailsWithMissingMessage()
    {
        var m = new Measurements().With(12, new Measurement(Filled(1)));
        var result = m.Compare(Actual((4, 1)));
        Assert.Equal("missing measurement value for index 12", Assert.Single(result.Errors));
    }

    [Fact]
    public void Compare_WarnOnlyMismatch_PassesWithWarning()
    {
        var m = new Measurements().With(1, new Measurement(Filled(1), warnOnly: true));
        var result = m.Compare(Actual((1, 2)));
        Assert.True(result.Passed);
        Assert.Contains("at index 1", Assert.Single(result.Warnings));
    }

    [Fact]
    public void Compare_SeveralMismatches_ReportedInAscendingIndexOrder()
    {
        var m = new Measurements().With(13, Measurement.Zero()).With(2, Measurement.Zero()).With(8, Measurement.Zero());
        var result = m.Compare(Actual((2, 1), (8, 1), (13, 1)));
        Assert.Equal(["index 2", "index 8", "index 13"], result.Errors.Select(e => e[e.IndexOf("index", StringComparison.Ordinal)..]));
    }

    [Fact]
    public void Compare_UnconfiguredIndex_NotChecked()
    {
        var m = new Measurements().With(0, new Measurement(Filled(0)));
        Assert.True(m.Compare(Actual((0, 0), (5, 9))).Passed);
    }

    [Fact]
    public void WithZeroPcr15_NonZeroPcr15_Fails()
    {
        var m = new Measurements().WithZeroPcr15();
        Assert.True(m[15].ExpectedSpan.SequenceEqual(new byte[32]));
        Assert.False(m[15].WarnOnly);
        Assert.False(m.Compare(Actual((15, 1))).Passed);
        Assert.True(m.Compare(Actual((15, 0))).Passed);
    }

    [Fact]
    public void With_IndexOutOfRange_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Measurements().With(24, Measurement.Zero()));
        Assert.Throws<ArgumentException>(() => new Measurement(new byte[31]));
    }
}
