using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Security.Cryptography;
using Avx2 = System.Runtime.Intrinsics.X86.Avx2;
using Avx512BW = System.Runtime.Intrinsics.X86.Avx512BW;
using Sse2 = System.Runtime.Intrinsics.X86.Sse2;
using X86Aes = System.Runtime.Intrinsics.X86.Aes;

namespace Asterism.Disk;

/// <summary>
/// XTS-AES-256 (IEEE 1619, as dm-crypt's <c>aes-xts-plain64</c>) over whole data units. The tweak of a data unit
/// is the little-endian 128-bit value of its unit number (plain64: 64 bits, upper half zero). No ciphertext
/// stealing: data units must be multiples of 16 bytes. AES-NI is used when present (eight blocks in flight),
/// otherwise AES-ECB from the platform over the whole unit after XORing precomputed tweaks.
/// </summary>
/// <remarks>
/// .NET 10 exposes no VAES intrinsics (there is no <c>Aes.V256</c>/<c>Aes.V512</c>, only
/// <c>Pclmulqdq.V256</c>/<c>V512</c>), so the AES rounds stay 128-bit AES-NI on every hardware path. What the wide
/// registers buy is the tweak sequence: instead of a serial chain of eight multiplications by alpha per group of
/// eight blocks, two (AVX-512) or four (AVX2) registers each hold consecutive tweaks and advance by alpha^8 in one
/// step, so the tweaks of the next group never wait on the previous one. The AVX2 form is the default; the
/// AVX-512 form is kept (forceable, tested) but measured slower.
/// </remarks>
public sealed class AesXts : IDisposable
{
    /// <summary>Key size in bytes: two AES-256 keys (data key, then tweak key).</summary>
    public const int KeySize = 64;

    private const int Rounds = 14;
    private static readonly Vector128<int> GfPoly = Vector128.Create(0x87, 0, 1, 0);

    private readonly Vector128<byte>[]? _encData;
    private readonly Vector128<byte>[]? _decData;
    private readonly Vector128<byte>[]? _encTweak;
    private readonly System.Security.Cryptography.Aes? _ecbData;
    private readonly System.Security.Cryptography.Aes? _ecbTweak;
    private bool _disposed;

    /// <summary>Creates the cipher from a 64-byte key; the caller keeps (and zeroes) its own copy.</summary>
    public AesXts(ReadOnlySpan<byte> key)
        : this(key, XtsPath.Auto)
    {
    }

    internal AesXts(ReadOnlySpan<byte> key, bool forceSoftware)
        : this(key, forceSoftware ? XtsPath.Software : XtsPath.Auto)
    {
    }

    /// <summary>Creates the cipher on one implementation; tests and benchmarks force each path through this.</summary>
    internal AesXts(ReadOnlySpan<byte> key, XtsPath path)
    {
        if (key.Length != KeySize)
        {
            throw new ArgumentException($"XTS-AES-256 needs a {KeySize}-byte key.", nameof(key));
        }
        Path = path == XtsPath.Auto ? BestPath() : path;
        if (!IsSupported(Path))
        {
            throw new PlatformNotSupportedException($"XTS path {Path} needs instructions this CPU or runtime lacks.");
        }
        if (IsHardwareAccelerated)
        {
            _encData = ExpandKey(key[..32]);
            _encTweak = ExpandKey(key[32..]);
            _decData = InvertKey(_encData);
        }
        else
        {
            _ecbData = CreateEcb(key[..32]);
            _ecbTweak = CreateEcb(key[32..]);
        }
    }

    /// <summary>True when an AES-NI path is in use.</summary>
    public bool IsHardwareAccelerated => Path != XtsPath.Software;

    /// <summary>The implementation in use.</summary>
    internal XtsPath Path { get; }

    /// <summary>Whether this process can run <paramref name="path"/>.</summary>
    internal static bool IsSupported(XtsPath path) => path switch
    {
        XtsPath.Software => true,
        XtsPath.AesNi128 => X86Aes.IsSupported && Sse2.IsSupported,
        XtsPath.AesNi256 => X86Aes.IsSupported && Avx2.IsSupported,
        XtsPath.AesNi512 => X86Aes.IsSupported && Avx512BW.IsSupported,
        _ => false,
    };

    /// <summary>
    /// What <see cref="XtsPath.Auto"/> picks. Not AesNi512: measured on this VAES/AVX-512 machine it runs at about
    /// 0.7× the 128-bit path, the lane extractions from ZMM into the AES-NI registers cost more than the tweak chain
    /// they replace. AesNi256 measured equal to 1.1× AesNi128 (bench/Asterism.Benchmarks/Disk/README.md).
    /// </summary>
    internal static XtsPath BestPath() =>
        IsSupported(XtsPath.AesNi256) ? XtsPath.AesNi256
        : IsSupported(XtsPath.AesNi128) ? XtsPath.AesNi128
        : XtsPath.Software;

    private static System.Security.Cryptography.Aes CreateEcb(ReadOnlySpan<byte> key)
    {
        // The Key setter copies; zero our temporary so only the Aes object (cleared on Dispose) holds the key.
        var copy = key.ToArray();
        try
        {
            var aes = System.Security.Cryptography.Aes.Create();
            aes.Key = copy;
            return aes;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(copy);
        }
    }

    /// <summary>Encrypts one data unit with tweak value <paramref name="unitNumber"/>.</summary>
    public void EncryptUnit(ReadOnlySpan<byte> source, Span<byte> destination, ulong unitNumber) =>
        Transform(source, destination, unitNumber, decrypt: false);

    /// <summary>Decrypts one data unit with tweak value <paramref name="unitNumber"/>.</summary>
    public void DecryptUnit(ReadOnlySpan<byte> source, Span<byte> destination, ulong unitNumber) =>
        Transform(source, destination, unitNumber, decrypt: true);

    /// <summary>
    /// Encrypts consecutive data units of <paramref name="unitSize"/> bytes; unit i gets tweak
    /// <paramref name="firstUnitNumber"/> + i × <paramref name="tweakStep"/>.
    /// </summary>
    public void EncryptUnits(ReadOnlySpan<byte> source, Span<byte> destination, int unitSize, ulong firstUnitNumber, ulong tweakStep)
        => TransformUnits(source, destination, unitSize, firstUnitNumber, tweakStep, decrypt: false);

    /// <summary>Decrypts consecutive data units; see <see cref="EncryptUnits"/>.</summary>
    public void DecryptUnits(ReadOnlySpan<byte> source, Span<byte> destination, int unitSize, ulong firstUnitNumber, ulong tweakStep)
        => TransformUnits(source, destination, unitSize, firstUnitNumber, tweakStep, decrypt: true);

    /// <inheritdoc />
    public override string ToString() => "AesXts [redacted]";

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        Clear(_encData);
        Clear(_decData);
        Clear(_encTweak);
        _ecbData?.Dispose();
        _ecbTweak?.Dispose();
    }

    private static void Clear(Vector128<byte>[]? keys)
    {
        if (keys is not null)
        {
            CryptographicOperations.ZeroMemory(MemoryMarshal.AsBytes(keys.AsSpan()));
        }
    }

    private void TransformUnits(ReadOnlySpan<byte> source, Span<byte> destination, int unitSize, ulong first, ulong step, bool decrypt)
    {
        if (unitSize <= 0 || unitSize % 16 != 0 || source.Length % unitSize != 0)
        {
            throw new ArgumentException("Data must be whole data units of a multiple of 16 bytes.", nameof(source));
        }
        if (destination.Length != source.Length)
        {
            throw new ArgumentException("Destination length must equal source length.", nameof(destination));
        }
        var units = source.Length / unitSize;
        for (var i = 0; i < units; i++)
        {
            var range = new Range(i * unitSize, (i + 1) * unitSize);
            Transform(source[range], destination[range], first + ((ulong)i * step), decrypt);
        }
    }

    private void Transform(ReadOnlySpan<byte> source, Span<byte> destination, ulong unitNumber, bool decrypt)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (source.Length == 0 || source.Length % 16 != 0)
        {
            throw new ArgumentException("XTS data units must be a non-zero multiple of 16 bytes (no ciphertext stealing).", nameof(source));
        }
        if (destination.Length != source.Length)
        {
            throw new ArgumentException("Destination length must equal source length.", nameof(destination));
        }
        if (IsHardwareAccelerated)
        {
            var tweak = EncryptBlock(Vector128.Create(unitNumber, 0UL).AsByte(), _encTweak!);
            switch (Path, decrypt)
            {
                case (XtsPath.AesNi512, false):
                    EncryptNi<Tweaks512>(source, destination, tweak, _encData!);
                    break;
                case (XtsPath.AesNi512, true):
                    DecryptNi<Tweaks512>(source, destination, tweak, _decData!);
                    break;
                case (XtsPath.AesNi256, false):
                    EncryptNi<Tweaks256>(source, destination, tweak, _encData!);
                    break;
                case (XtsPath.AesNi256, true):
                    DecryptNi<Tweaks256>(source, destination, tweak, _decData!);
                    break;
                case (_, false):
                    EncryptNi<Tweaks128>(source, destination, tweak, _encData!);
                    break;
                default:
                    DecryptNi<Tweaks128>(source, destination, tweak, _decData!);
                    break;
            }
        }
        else
        {
            TransformEcb(source, destination, unitNumber, decrypt);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> Double(Vector128<byte> t)
    {
        // Multiply by alpha in GF(2^128), little-endian: shift left one bit, fold the carry with 0x87.
        var sign = Sse2.ShiftRightArithmetic(t.AsInt32(), 31);
        var carries = Sse2.And(Sse2.Shuffle(sign, 0x13), GfPoly);
        var shifted = Sse2.Add(t.AsUInt64(), t.AsUInt64());
        return Sse2.Xor(shifted.AsByte(), carries.AsByte());
    }

    private static Vector128<byte> EncryptBlock(Vector128<byte> block, Vector128<byte>[] k)
    {
        var b = Sse2.Xor(block, k[0]);
        for (var r = 1; r < Rounds; r++)
        {
            b = X86Aes.Encrypt(b, k[r]);
        }
        return X86Aes.EncryptLast(b, k[Rounds]);
    }

    private static void EncryptNi<TTweaks>(ReadOnlySpan<byte> source, Span<byte> destination, Vector128<byte> t, Vector128<byte>[] keys)
        where TTweaks : struct, ITweaks<TTweaks>
    {
        ref var src = ref MemoryMarshal.GetReference(source);
        ref var dst = ref MemoryMarshal.GetReference(destination);
        var k = keys.AsSpan(0, Rounds + 1);
        var k0 = k[0];
        var k1 = k[1];
        var k2 = k[2];
        var k3 = k[3];
        var k4 = k[4];
        var k5 = k[5];
        var k6 = k[6];
        var k7 = k[7];
        var k8 = k[8];
        var k9 = k[9];
        var k10 = k[10];
        var k11 = k[11];
        var k12 = k[12];
        var k13 = k[13];
        var k14 = k[14];
        var blocks = (nuint)(source.Length / 16);
        var gen = TTweaks.Start(t);
        nuint i = 0;
        for (; i + 8 <= blocks; i += 8)
        {
            gen.Next(out var t0, out var t1, out var t2, out var t3, out var t4, out var t5, out var t6, out var t7);
            var o = i * 16;
            var b0 = Vector128.LoadUnsafe(ref src, o) ^ t0 ^ k0;
            var b1 = Vector128.LoadUnsafe(ref src, o + 16) ^ t1 ^ k0;
            var b2 = Vector128.LoadUnsafe(ref src, o + 32) ^ t2 ^ k0;
            var b3 = Vector128.LoadUnsafe(ref src, o + 48) ^ t3 ^ k0;
            var b4 = Vector128.LoadUnsafe(ref src, o + 64) ^ t4 ^ k0;
            var b5 = Vector128.LoadUnsafe(ref src, o + 80) ^ t5 ^ k0;
            var b6 = Vector128.LoadUnsafe(ref src, o + 96) ^ t6 ^ k0;
            var b7 = Vector128.LoadUnsafe(ref src, o + 112) ^ t7 ^ k0;
            Enc8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k1);
            Enc8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k2);
            Enc8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k3);
            Enc8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k4);
            Enc8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k5);
            Enc8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k6);
            Enc8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k7);
            Enc8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k8);
            Enc8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k9);
            Enc8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k10);
            Enc8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k11);
            Enc8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k12);
            Enc8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k13);
            (X86Aes.EncryptLast(b0, k14) ^ t0).StoreUnsafe(ref dst, o);
            (X86Aes.EncryptLast(b1, k14) ^ t1).StoreUnsafe(ref dst, o + 16);
            (X86Aes.EncryptLast(b2, k14) ^ t2).StoreUnsafe(ref dst, o + 32);
            (X86Aes.EncryptLast(b3, k14) ^ t3).StoreUnsafe(ref dst, o + 48);
            (X86Aes.EncryptLast(b4, k14) ^ t4).StoreUnsafe(ref dst, o + 64);
            (X86Aes.EncryptLast(b5, k14) ^ t5).StoreUnsafe(ref dst, o + 80);
            (X86Aes.EncryptLast(b6, k14) ^ t6).StoreUnsafe(ref dst, o + 96);
            (X86Aes.EncryptLast(b7, k14) ^ t7).StoreUnsafe(ref dst, o + 112);
        }
        t = gen.Current;
        for (; i < blocks; i++)
        {
            var o = i * 16;
            var b = Vector128.LoadUnsafe(ref src, o) ^ t;
            (EncryptBlock(b, keys) ^ t).StoreUnsafe(ref dst, o);
            t = Double(t);
        }
    }

    private static void DecryptNi<TTweaks>(ReadOnlySpan<byte> source, Span<byte> destination, Vector128<byte> t, Vector128<byte>[] keys)
        where TTweaks : struct, ITweaks<TTweaks>
    {
        ref var src = ref MemoryMarshal.GetReference(source);
        ref var dst = ref MemoryMarshal.GetReference(destination);
        var k = keys.AsSpan(0, Rounds + 1);
        var k0 = k[0];
        var k1 = k[1];
        var k2 = k[2];
        var k3 = k[3];
        var k4 = k[4];
        var k5 = k[5];
        var k6 = k[6];
        var k7 = k[7];
        var k8 = k[8];
        var k9 = k[9];
        var k10 = k[10];
        var k11 = k[11];
        var k12 = k[12];
        var k13 = k[13];
        var k14 = k[14];
        var blocks = (nuint)(source.Length / 16);
        var gen = TTweaks.Start(t);
        nuint i = 0;
        for (; i + 8 <= blocks; i += 8)
        {
            gen.Next(out var t0, out var t1, out var t2, out var t3, out var t4, out var t5, out var t6, out var t7);
            var o = i * 16;
            var b0 = Vector128.LoadUnsafe(ref src, o) ^ t0 ^ k0;
            var b1 = Vector128.LoadUnsafe(ref src, o + 16) ^ t1 ^ k0;
            var b2 = Vector128.LoadUnsafe(ref src, o + 32) ^ t2 ^ k0;
            var b3 = Vector128.LoadUnsafe(ref src, o + 48) ^ t3 ^ k0;
            var b4 = Vector128.LoadUnsafe(ref src, o + 64) ^ t4 ^ k0;
            var b5 = Vector128.LoadUnsafe(ref src, o + 80) ^ t5 ^ k0;
            var b6 = Vector128.LoadUnsafe(ref src, o + 96) ^ t6 ^ k0;
            var b7 = Vector128.LoadUnsafe(ref src, o + 112) ^ t7 ^ k0;
            Dec8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k1);
            Dec8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k2);
            Dec8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k3);
            Dec8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k4);
            Dec8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k5);
            Dec8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k6);
            Dec8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k7);
            Dec8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k8);
            Dec8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k9);
            Dec8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k10);
            Dec8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k11);
            Dec8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k12);
            Dec8(ref b0, ref b1, ref b2, ref b3, ref b4, ref b5, ref b6, ref b7, k13);
            (X86Aes.DecryptLast(b0, k14) ^ t0).StoreUnsafe(ref dst, o);
            (X86Aes.DecryptLast(b1, k14) ^ t1).StoreUnsafe(ref dst, o + 16);
            (X86Aes.DecryptLast(b2, k14) ^ t2).StoreUnsafe(ref dst, o + 32);
            (X86Aes.DecryptLast(b3, k14) ^ t3).StoreUnsafe(ref dst, o + 48);
            (X86Aes.DecryptLast(b4, k14) ^ t4).StoreUnsafe(ref dst, o + 64);
            (X86Aes.DecryptLast(b5, k14) ^ t5).StoreUnsafe(ref dst, o + 80);
            (X86Aes.DecryptLast(b6, k14) ^ t6).StoreUnsafe(ref dst, o + 96);
            (X86Aes.DecryptLast(b7, k14) ^ t7).StoreUnsafe(ref dst, o + 112);
        }
        t = gen.Current;
        for (; i < blocks; i++)
        {
            var o = i * 16;
            var b = Vector128.LoadUnsafe(ref src, o) ^ t ^ k0;
            for (var r = 1; r < Rounds; r++)
            {
                b = X86Aes.Decrypt(b, keys[r]);
            }
            (X86Aes.DecryptLast(b, k14) ^ t).StoreUnsafe(ref dst, o);
            t = Double(t);
        }
    }

    /// <summary>A source of consecutive XTS tweaks, eight at a time.</summary>
    private interface ITweaks<TSelf>
        where TSelf : struct, ITweaks<TSelf>
    {
        /// <summary>The sequence starting at tweak <paramref name="t0"/> (the encrypted unit number).</summary>
        static abstract TSelf Start(Vector128<byte> t0);

        /// <summary>The first tweak not yet handed out.</summary>
        Vector128<byte> Current { get; }

        /// <summary>Hands out the next eight tweaks.</summary>
        void Next(out Vector128<byte> t0, out Vector128<byte> t1, out Vector128<byte> t2, out Vector128<byte> t3,
            out Vector128<byte> t4, out Vector128<byte> t5, out Vector128<byte> t6, out Vector128<byte> t7);
    }

    /// <summary>The serial chain: each tweak is the previous one times alpha (the path before AVX2/AVX-512).</summary>
    private struct Tweaks128 : ITweaks<Tweaks128>
    {
        private Vector128<byte> _t;

        public readonly Vector128<byte> Current => _t;

        public static Tweaks128 Start(Vector128<byte> t0) => new() { _t = t0 };

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Next(out Vector128<byte> t0, out Vector128<byte> t1, out Vector128<byte> t2, out Vector128<byte> t3,
            out Vector128<byte> t4, out Vector128<byte> t5, out Vector128<byte> t6, out Vector128<byte> t7)
        {
            t0 = _t;
            t1 = Double(t0);
            t2 = Double(t1);
            t3 = Double(t2);
            t4 = Double(t3);
            t5 = Double(t4);
            t6 = Double(t5);
            t7 = Double(t6);
            _t = Double(t7);
        }
    }

    /// <summary>Four AVX2 registers of two tweaks each; every register advances by alpha^8 independently.</summary>
    private struct Tweaks256 : ITweaks<Tweaks256>
    {
        private Vector256<byte> _v0;
        private Vector256<byte> _v1;
        private Vector256<byte> _v2;
        private Vector256<byte> _v3;

        public readonly Vector128<byte> Current => _v0.GetLower();

        public static Tweaks256 Start(Vector128<byte> t0)
        {
            var t1 = Double(t0);
            var t2 = Double(t1);
            var t3 = Double(t2);
            var t4 = Double(t3);
            var t5 = Double(t4);
            var t6 = Double(t5);
            var t7 = Double(t6);
            return new()
            {
                _v0 = Vector256.Create(t0, t1),
                _v1 = Vector256.Create(t2, t3),
                _v2 = Vector256.Create(t4, t5),
                _v3 = Vector256.Create(t6, t7),
            };
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Next(out Vector128<byte> t0, out Vector128<byte> t1, out Vector128<byte> t2, out Vector128<byte> t3,
            out Vector128<byte> t4, out Vector128<byte> t5, out Vector128<byte> t6, out Vector128<byte> t7)
        {
            t0 = _v0.GetLower();
            t1 = _v0.GetUpper();
            t2 = _v1.GetLower();
            t3 = _v1.GetUpper();
            t4 = _v2.GetLower();
            t5 = _v2.GetUpper();
            t6 = _v3.GetLower();
            t7 = _v3.GetUpper();
            _v0 = TimesAlpha8(_v0);
            _v1 = TimesAlpha8(_v1);
            _v2 = TimesAlpha8(_v2);
            _v3 = TimesAlpha8(_v3);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<byte> TimesAlpha8(Vector256<byte> v)
        {
            // Per 128-bit lane t = c·x^120 + r: t·x^8 = (r << 8 bits) + c·(x^7 + x^2 + x + 1), the top byte c
            // folded back carry-lessly; c·0x87 has at most 15 bits, so no second reduction is needed.
            var c = Avx2.ShiftRightLogical128BitLane(v, 15).AsUInt64();
            var fold = c ^ (c << 1) ^ (c << 2) ^ (c << 7);
            return Avx2.ShiftLeftLogical128BitLane(v, 1) ^ fold.AsByte();
        }
    }

    /// <summary>Two AVX-512 registers of four tweaks each; every register advances by alpha^8 independently.</summary>
    private struct Tweaks512 : ITweaks<Tweaks512>
    {
        private Vector512<byte> _w0;
        private Vector512<byte> _w1;

        public readonly Vector128<byte> Current => _w0.GetLower().GetLower();

        public static Tweaks512 Start(Vector128<byte> t0)
        {
            var t1 = Double(t0);
            var t2 = Double(t1);
            var t3 = Double(t2);
            var t4 = Double(t3);
            var t5 = Double(t4);
            var t6 = Double(t5);
            var t7 = Double(t6);
            return new()
            {
                _w0 = Vector512.Create(Vector256.Create(t0, t1), Vector256.Create(t2, t3)),
                _w1 = Vector512.Create(Vector256.Create(t4, t5), Vector256.Create(t6, t7)),
            };
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Next(out Vector128<byte> t0, out Vector128<byte> t1, out Vector128<byte> t2, out Vector128<byte> t3,
            out Vector128<byte> t4, out Vector128<byte> t5, out Vector128<byte> t6, out Vector128<byte> t7)
        {
            var a = _w0.GetLower();
            var b = _w0.GetUpper();
            var c = _w1.GetLower();
            var d = _w1.GetUpper();
            t0 = a.GetLower();
            t1 = a.GetUpper();
            t2 = b.GetLower();
            t3 = b.GetUpper();
            t4 = c.GetLower();
            t5 = c.GetUpper();
            t6 = d.GetLower();
            t7 = d.GetUpper();
            _w0 = TimesAlpha8(_w0);
            _w1 = TimesAlpha8(_w1);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<byte> TimesAlpha8(Vector512<byte> v)
        {
            // As in Tweaks256, four lanes at once.
            var c = Avx512BW.ShiftRightLogical128BitLane(v, 15).AsUInt64();
            var fold = c ^ (c << 1) ^ (c << 2) ^ (c << 7);
            return Avx512BW.ShiftLeftLogical128BitLane(v, 1) ^ fold.AsByte();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Enc8(ref Vector128<byte> b0, ref Vector128<byte> b1, ref Vector128<byte> b2, ref Vector128<byte> b3,
        ref Vector128<byte> b4, ref Vector128<byte> b5, ref Vector128<byte> b6, ref Vector128<byte> b7, Vector128<byte> k)
    {
        b0 = X86Aes.Encrypt(b0, k);
        b1 = X86Aes.Encrypt(b1, k);
        b2 = X86Aes.Encrypt(b2, k);
        b3 = X86Aes.Encrypt(b3, k);
        b4 = X86Aes.Encrypt(b4, k);
        b5 = X86Aes.Encrypt(b5, k);
        b6 = X86Aes.Encrypt(b6, k);
        b7 = X86Aes.Encrypt(b7, k);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dec8(ref Vector128<byte> b0, ref Vector128<byte> b1, ref Vector128<byte> b2, ref Vector128<byte> b3,
        ref Vector128<byte> b4, ref Vector128<byte> b5, ref Vector128<byte> b6, ref Vector128<byte> b7, Vector128<byte> k)
    {
        b0 = X86Aes.Decrypt(b0, k);
        b1 = X86Aes.Decrypt(b1, k);
        b2 = X86Aes.Decrypt(b2, k);
        b3 = X86Aes.Decrypt(b3, k);
        b4 = X86Aes.Decrypt(b4, k);
        b5 = X86Aes.Decrypt(b5, k);
        b6 = X86Aes.Decrypt(b6, k);
        b7 = X86Aes.Decrypt(b7, k);
    }

    private static Vector128<byte>[] ExpandKey(ReadOnlySpan<byte> key)
    {
        // AES-256 key schedule (FIPS 197) with AESKEYGENASSIST.
        var rk = new Vector128<byte>[Rounds + 1];
        var a = Vector128.Create(key[..16]);
        var b = Vector128.Create(key[16..32]);
        rk[0] = a;
        rk[1] = b;
        ReadOnlySpan<byte> rcon = [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40];
        for (var i = 0; i < rcon.Length; i++)
        {
            a = MixWord(a, Sse2.Shuffle(KeygenAssist(b, rcon[i]).AsInt32(), 0xff).AsByte());
            rk[2 + (2 * i)] = a;
            if (i == rcon.Length - 1)
            {
                break;
            }
            b = MixWord(b, Sse2.Shuffle(X86Aes.KeygenAssist(a, 0).AsInt32(), 0xaa).AsByte());
            rk[3 + (2 * i)] = b;
        }
        return rk;
    }

    private static Vector128<byte> KeygenAssist(Vector128<byte> value, byte rcon) => rcon switch
    {
        0x01 => X86Aes.KeygenAssist(value, 0x01),
        0x02 => X86Aes.KeygenAssist(value, 0x02),
        0x04 => X86Aes.KeygenAssist(value, 0x04),
        0x08 => X86Aes.KeygenAssist(value, 0x08),
        0x10 => X86Aes.KeygenAssist(value, 0x10),
        0x20 => X86Aes.KeygenAssist(value, 0x20),
        _ => X86Aes.KeygenAssist(value, 0x40),
    };

    private static Vector128<byte> MixWord(Vector128<byte> x, Vector128<byte> assist)
    {
        var t = Sse2.ShiftLeftLogical128BitLane(x, 4);
        x = Sse2.Xor(x, t);
        t = Sse2.ShiftLeftLogical128BitLane(t, 4);
        x = Sse2.Xor(x, t);
        t = Sse2.ShiftLeftLogical128BitLane(t, 4);
        x = Sse2.Xor(x, t);
        return Sse2.Xor(x, assist);
    }

    private static Vector128<byte>[] InvertKey(Vector128<byte>[] enc)
    {
        var dec = new Vector128<byte>[Rounds + 1];
        dec[0] = enc[Rounds];
        for (var r = 1; r < Rounds; r++)
        {
            dec[r] = X86Aes.InverseMixColumns(enc[Rounds - r]);
        }
        dec[Rounds] = enc[0];
        return dec;
    }

    private void TransformEcb(ReadOnlySpan<byte> source, Span<byte> destination, ulong unitNumber, bool decrypt)
    {
        var length = source.Length;
        var tweaks = length <= 4096 ? stackalloc byte[length] : new byte[length];
        Span<byte> iv = stackalloc byte[16];
        iv.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(iv, unitNumber);
        _ecbTweak!.EncryptEcb(iv, tweaks[..16], PaddingMode.None);
        var lo = BinaryPrimitives.ReadUInt64LittleEndian(tweaks);
        var hi = BinaryPrimitives.ReadUInt64LittleEndian(tweaks[8..]);
        for (var off = 16; off < length; off += 16)
        {
            var carry = (ulong)((long)hi >> 63) & 0x87;
            hi = (hi << 1) | (lo >> 63);
            lo = (lo << 1) ^ carry;
            BinaryPrimitives.WriteUInt64LittleEndian(tweaks[off..], lo);
            BinaryPrimitives.WriteUInt64LittleEndian(tweaks[(off + 8)..], hi);
        }
        var work = length <= 4096 ? stackalloc byte[length] : new byte[length];
        Xor(source, tweaks, work);
        if (decrypt)
        {
            _ecbData!.DecryptEcb(work, work, PaddingMode.None);
        }
        else
        {
            _ecbData!.EncryptEcb(work, work, PaddingMode.None);
        }
        Xor(work, tweaks, destination);
        CryptographicOperations.ZeroMemory(work);
        CryptographicOperations.ZeroMemory(tweaks);
    }

    private static void Xor(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, Span<byte> destination)
    {
        var i = 0;
        for (; i + Vector256<byte>.Count <= a.Length; i += Vector256<byte>.Count)
        {
            (Vector256.Create(a[i..]) ^ Vector256.Create(b[i..])).CopyTo(destination[i..]);
        }
        for (; i < a.Length; i++)
        {
            destination[i] = (byte)(a[i] ^ b[i]);
        }
    }
}

/// <summary>Which XTS implementation an <see cref="AesXts"/> runs; internal so tests can force each one.</summary>
internal enum XtsPath
{
    /// <summary>The fastest measured path this process supports (<see cref="AesXts.BestPath"/>).</summary>
    Auto,

    /// <summary>Platform AES-ECB over precomputed tweaks: the scalar reference and the fallback without AES-NI.</summary>
    Software,

    /// <summary>AES-NI, eight blocks in flight, tweaks by a serial chain of doublings.</summary>
    AesNi128,

    /// <summary>AES-NI rounds, tweaks two per AVX2 register advanced by alpha^8.</summary>
    AesNi256,

    /// <summary>AES-NI rounds, tweaks four per AVX-512 register advanced by alpha^8.</summary>
    AesNi512,
}
