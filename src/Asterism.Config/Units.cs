namespace Asterism.Config;

/// <summary>Parses "2s", "500ms", "1m" and "32MiB"-style values.</summary>
public static class Durations
{
    public static TimeSpan Parse(string text, string option)
    {
        var t = text.Trim();
        double value;
        if (t.EndsWith("ms", StringComparison.Ordinal) && double.TryParse(t[..^2], System.Globalization.CultureInfo.InvariantCulture, out value))
        {
            return Checked(TimeSpan.FromMilliseconds(value), option);
        }
        if (t.EndsWith('s') && double.TryParse(t[..^1], System.Globalization.CultureInfo.InvariantCulture, out value))
        {
            return Checked(TimeSpan.FromSeconds(value), option);
        }
        if (t.EndsWith('m') && double.TryParse(t[..^1], System.Globalization.CultureInfo.InvariantCulture, out value))
        {
            return Checked(TimeSpan.FromMinutes(value), option);
        }
        throw new ArgumentException($"{option}: \"{text}\" is not a duration such as 500ms, 2s or 1m");
    }

    private static TimeSpan Checked(TimeSpan value, string option) =>
        value > TimeSpan.Zero && value <= TimeSpan.FromHours(1) ? value : throw new ArgumentException($"{option} must be between 0 and 1h");

    public static long ParseSize(string text, string option)
    {
        var t = text.Trim();
        (string Suffix, long Factor)[] units = [("GiB", 1L << 30), ("MiB", 1L << 20), ("KiB", 1L << 10), ("B", 1)];
        foreach (var (suffix, factor) in units)
        {
            if (t.EndsWith(suffix, StringComparison.Ordinal) && long.TryParse(t[..^suffix.Length], System.Globalization.CultureInfo.InvariantCulture, out var n) && n > 0)
            {
                return checked(n * factor);
            }
        }
        if (long.TryParse(t, System.Globalization.CultureInfo.InvariantCulture, out var bytes) && bytes > 0)
        {
            return bytes;
        }
        throw new ArgumentException($"{option}: \"{text}\" is not a size such as 64MiB");
    }
}
