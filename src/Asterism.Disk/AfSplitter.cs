using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Asterism.Disk;

/// <summary>LUKS1 anti-forensic splitter with SHA-256 diffusion (as cryptsetup's af.c: stripes × key bytes).</summary>
internal static class AfSplitter
{
    public static void Split(ReadOnlySpan<byte> key, Span<byte> material, int stripes)
    {
        var n = key.Length;
        if (material.Length != n * stripes)
        {
            throw new ArgumentException("AF material has the wrong size.", nameof(material));
        }
        Span<byte> block = stackalloc byte[n];
        block.Clear();
        RandomNumberGenerator.Fill(material[..(n * (stripes - 1))]);
        for (var i = 0; i < stripes - 1; i++)
        {
            Xor(block, material.Slice(i * n, n));
            Diffuse(block);
        }
        var last = material.Slice((stripes - 1) * n, n);
        for (var j = 0; j < n; j++)
        {
            last[j] = (byte)(block[j] ^ key[j]);
        }
        CryptographicOperations.ZeroMemory(block);
    }

    public static void Merge(ReadOnlySpan<byte> material, Span<byte> key, int stripes)
    {
        var n = key.Length;
        if (material.Length != n * stripes)
        {
            throw new ArgumentException("AF material has the wrong size.", nameof(material));
        }
        Span<byte> block = stackalloc byte[n];
        block.Clear();
        for (var i = 0; i < stripes - 1; i++)
        {
            Xor(block, material.Slice(i * n, n));
            Diffuse(block);
        }
        var last = material.Slice((stripes - 1) * n, n);
        for (var j = 0; j < n; j++)
        {
            key[j] = (byte)(block[j] ^ last[j]);
        }
        CryptographicOperations.ZeroMemory(block);
    }

    private static void Xor(Span<byte> block, ReadOnlySpan<byte> data)
    {
        for (var j = 0; j < block.Length; j++)
        {
            block[j] ^= data[j];
        }
    }

    private static void Diffuse(Span<byte> block)
    {
        // Each 32-byte chunk i (and a shorter tail) becomes SHA-256(be32(i) || chunk), truncated to the chunk length.
        Span<byte> input = stackalloc byte[4 + 32];
        Span<byte> hash = stackalloc byte[32];
        var chunks = (block.Length + 31) / 32;
        for (var i = 0; i < chunks; i++)
        {
            var chunk = block.Slice(i * 32, Math.Min(32, block.Length - (i * 32)));
            BinaryPrimitives.WriteUInt32BigEndian(input, (uint)i);
            chunk.CopyTo(input[4..]);
            SHA256.HashData(input[..(4 + chunk.Length)], hash);
            hash[..chunk.Length].CopyTo(chunk);
        }
        CryptographicOperations.ZeroMemory(input);
        CryptographicOperations.ZeroMemory(hash);
    }
}
