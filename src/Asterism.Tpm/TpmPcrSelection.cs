namespace Asterism.Tpm;

/// <summary>
/// One bank of a TPML_PCR_SELECTION: a hash algorithm and the PCR indices chosen in it, ascending.
/// The order of indices is the order in which PCR values enter a quote's pcrDigest.
/// </summary>
public sealed class TpmPcrSelection
{
    private const int MaxBanks = 16;
    private const int MaxSelectBytes = 4;

    private readonly int[] _indices;

    public TpmPcrSelection(ushort hashAlg, IEnumerable<int> indices)
    {
        ArgumentNullException.ThrowIfNull(indices);
        var sorted = indices.Distinct().Order().ToArray();
        foreach (var i in sorted)
        {
            if (i is < 0 or >= MaxSelectBytes * 8)
            {
                throw new ArgumentOutOfRangeException(nameof(indices), i, "PCR index must be 0-31");
            }
        }
        HashAlg = hashAlg;
        _indices = sorted;
    }

    /// <summary>A SHA-256 bank selection of <paramref name="indices"/> (0-23).</summary>
    public static TpmPcrSelection Sha256(IEnumerable<int> indices)
    {
        var s = new TpmPcrSelection(TpmAlg.Sha256, indices);
        if (s._indices.Any(i => i >= TpmConst.PcrCount))
        {
            throw new ArgumentOutOfRangeException(nameof(indices), "PCR index must be 0-23");
        }
        return s;
    }

    public ushort HashAlg { get; }

    public IReadOnlyList<int> Indices => _indices;

    /// <summary>Writes a TPML_PCR_SELECTION holding this one bank (3 select bytes, 24 PCRs).</summary>
    internal void WriteList(TpmWriter w)
    {
        w.WriteUInt32(1);
        WriteSelection(w);
    }

    internal void WriteSelection(TpmWriter w)
    {
        var size = _indices.Length > 0 && _indices[^1] >= 24 ? 4 : 3;
        Span<byte> bits = stackalloc byte[size];
        bits.Clear();
        foreach (var i in _indices)
        {
            bits[i / 8] |= (byte)(1 << (i % 8));
        }
        w.WriteUInt16(HashAlg).WriteByte((byte)size).WriteBytes(bits);
    }

    /// <summary>Reads a TPML_PCR_SELECTION (bounded: at most 16 banks of at most 4 select bytes).</summary>
    internal static List<TpmPcrSelection> ReadList(ref TpmReader r)
    {
        var count = r.ReadUInt32();
        if (count > MaxBanks)
        {
            throw new TpmFormatException($"PCR selection lists {count} banks, at most {MaxBanks} allowed");
        }
        var list = new List<TpmPcrSelection>((int)count);
        for (var b = 0; b < count; b++)
        {
            var alg = r.ReadUInt16();
            var size = r.ReadByte();
            if (size > MaxSelectBytes)
            {
                throw new TpmFormatException($"PCR select of {size} bytes, at most {MaxSelectBytes} allowed");
            }
            var bits = r.ReadBytes(size);
            var indices = new List<int>();
            for (var i = 0; i < size * 8; i++)
            {
                if ((bits[i / 8] & (1 << (i % 8))) != 0)
                {
                    indices.Add(i);
                }
            }
            list.Add(new TpmPcrSelection(alg, indices));
        }
        return list;
    }

    public override string ToString() => $"0x{HashAlg:X4}:{string.Join(',', _indices)}";
}
