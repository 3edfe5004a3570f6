using System.Security.Cryptography;

namespace Asterism.Attestation;

/// <summary>One expected PCR value; enforced unless <see cref="WarnOnly"/>.</summary>
public sealed class Measurement
{
    public const int Length = 32;

    private readonly byte[] _expected;

    public Measurement(ReadOnlySpan<byte> expected, bool warnOnly = false)
    {
        if (expected.Length != Length)
        {
            throw new ArgumentException($"an expected measurement must be {Length} bytes, got {expected.Length}", nameof(expected));
        }
        _expected = expected.ToArray();
        WarnOnly = warnOnly;
    }

    /// <summary>A copy of the expected value.</summary>
    public byte[] Expected => (byte[])_expected.Clone();

    public ReadOnlySpan<byte> ExpectedSpan => _expected;

    public bool WarnOnly { get; }

    public bool Matches(ReadOnlySpan<byte> actual) => CryptographicOperations.FixedTimeEquals(_expected, actual);

    public static Measurement Zero(bool warnOnly = false) => new(new byte[Length], warnOnly);

    public override string ToString() => $"{Convert.ToHexStringLower(_expected)}{(WarnOnly ? " (warn only)" : "")}";
}
