using System.Security.Cryptography;
using Org.BouncyCastle.Asn1.X9;
using Org.BouncyCastle.Crypto.EC;
using Org.BouncyCastle.Math;
using Org.BouncyCastle.Math.EC;
using ECPoint = Org.BouncyCastle.Math.EC.ECPoint;

namespace Asterism.Secrets;

/// <summary>
/// Shamir sharing of one scalar over the secp256k1 group order with Feldman commitments: the dealer publishes
/// C_j = a_j·G for every coefficient, so each holder can check its share y_i = f(i) by y_i·G = Σ C_j·i^j without
/// learning anything about f(0) beyond f(0)·G. Scalars travel as 32-byte big-endian arrays the caller zeroes.
/// BouncyCastle's BigInteger is immutable and cannot be wiped; the arrays we hand out can (see the README).
/// </summary>
public static class Feldman
{
    public const string GroupName = "secp256k1";
    public const int ScalarSize = 32;
    public const int PointSize = 33;

    private static readonly X9ECParameters Curve = CustomNamedCurves.GetByName(GroupName);

    private static BigInteger Order => Curve.N;

    /// <summary>Deals a fresh random secret scalar to <paramref name="count"/> holders, any <paramref name="threshold"/> of whom can rebuild it.</summary>
    public static (byte[] Secret, IReadOnlyList<byte[]> Commitments, IReadOnlyList<byte[]> Shares) Deal(int threshold, int count)
    {
        var coefficients = Enumerable.Range(0, threshold).Select(_ => RandomScalar()).ToArray();
        var commitments = coefficients.Select(a => Curve.G.Multiply(a).Normalize().GetEncoded(true)).ToList();
        var shares = new List<byte[]>(count);
        for (var i = 1; i <= count; i++)
        {
            shares.Add(ToBytes(Evaluate(coefficients, BigInteger.ValueOf(i))));
        }
        return (ToBytes(coefficients[0]), commitments, shares);
    }

    /// <summary>True when share <paramref name="value"/> of holder <paramref name="index"/> lies on the committed polynomial.</summary>
    public static bool Verify(IReadOnlyList<byte[]> commitments, int index, ReadOnlySpan<byte> value)
    {
        if (value.Length != ScalarSize || index < 1)
        {
            return false;
        }
        var y = new BigInteger(1, value.ToArray());
        if (y.SignValue == 0 || y.CompareTo(Order) >= 0)
        {
            return false;
        }
        ECPoint expected = Curve.Curve.Infinity;
        var x = BigInteger.ValueOf(index);
        var power = BigInteger.One;
        foreach (var commitment in commitments)
        {
            if (DecodePoint(commitment) is not { } point)
            {
                return false;
            }
            expected = expected.Add(point.Multiply(power));
            power = power.Multiply(x).Mod(Order);
        }
        return Curve.G.Multiply(y).Normalize().Equals(expected.Normalize());
    }

    /// <summary>True when the bytes are a compressed point of the group other than the identity.</summary>
    public static bool IsValidCommitment(ReadOnlySpan<byte> encoded) => DecodePoint(encoded.ToArray()) is not null;

    /// <summary>f(0) by Lagrange interpolation from distinct (index, value) pairs (already verified, exactly threshold many).</summary>
    public static byte[] Interpolate(IReadOnlyList<(int Index, byte[] Value)> shares)
    {
        var secret = BigInteger.Zero;
        foreach (var (i, value) in shares)
        {
            var numerator = BigInteger.One;
            var denominator = BigInteger.One;
            foreach (var (j, _) in shares)
            {
                if (j == i)
                {
                    continue;
                }
                numerator = numerator.Multiply(BigInteger.ValueOf(j)).Mod(Order);
                denominator = denominator.Multiply(BigInteger.ValueOf(j - i)).Mod(Order);
            }
            var term = new BigInteger(1, value).Multiply(numerator).Multiply(denominator.ModInverse(Order)).Mod(Order);
            secret = secret.Add(term).Mod(Order);
        }
        return ToBytes(secret);
    }

    private static ECPoint? DecodePoint(byte[] encoded)
    {
        if (encoded.Length != PointSize)
        {
            return null;
        }
        try
        {
            var point = Curve.Curve.DecodePoint(encoded);
            return point.IsInfinity || !point.IsValid() ? null : point;
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException)
        {
            // BouncyCastle throws FormatException for a prefix byte other than 02/03 (found by the mutation run).
            return null;
        }
    }

    private static BigInteger Evaluate(BigInteger[] coefficients, BigInteger x)
    {
        var result = BigInteger.Zero;
        for (var j = coefficients.Length - 1; j >= 0; j--)
        {
            result = result.Multiply(x).Add(coefficients[j]).Mod(Order);
        }
        return result;
    }

    private static BigInteger RandomScalar()
    {
        var bytes = new byte[ScalarSize];
        try
        {
            while (true)
            {
                RandomNumberGenerator.Fill(bytes);
                var candidate = new BigInteger(1, bytes);
                if (candidate.SignValue > 0 && candidate.CompareTo(Order) < 0)
                {
                    return candidate;
                }
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(bytes);
        }
    }

    private static byte[] ToBytes(BigInteger value) => value.ToByteArrayUnsigned().Length == ScalarSize
        ? value.ToByteArrayUnsigned()
        : Pad(value.ToByteArrayUnsigned());

    private static byte[] Pad(byte[] raw)
    {
        var padded = new byte[ScalarSize];
        raw.CopyTo(padded, ScalarSize - raw.Length);
        CryptographicOperations.ZeroMemory(raw);
        return padded;
    }
}
