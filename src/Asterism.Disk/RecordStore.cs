using System.Buffers.Binary;
using System.Collections;
using System.Security.Cryptography;
using System.Text;

namespace Asterism.Disk;

/// <summary>A commit needs more space (or more records) than the store has; nothing was changed.</summary>
public sealed class RecordStoreFullException(string message) : IOException(message);

/// <summary>The store's on-disk structures do not verify (checksums, bounds, overlaps).</summary>
public sealed class RecordStoreCorruptException : Exception
{
    /// <summary>Creates the exception.</summary>
    public RecordStoreCorruptException(string message)
        : base(message)
    {
    }
}

/// <summary>A set of puts and deletes committed atomically by <see cref="RecordStore.Commit"/>.</summary>
public sealed class RecordBatch
{
    internal List<(string Name, byte[]? Value)> Changes { get; } = [];

    /// <summary>Sets <paramref name="name"/> to a copy of <paramref name="value"/>.</summary>
    public RecordBatch Put(string name, ReadOnlySpan<byte> value)
    {
        RecordStore.CheckName(name);
        if (value.Length > RecordStore.MaxValueBytes)
        {
            throw new ArgumentException($"A record value is at most {RecordStore.MaxValueBytes} bytes.", nameof(value));
        }
        Changes.Add((name, value.ToArray()));
        return this;
    }

    /// <summary>Removes <paramref name="name"/> (no-op when absent).</summary>
    public RecordBatch Delete(string name)
    {
        RecordStore.CheckName(name);
        Changes.Add((name, null));
        return this;
    }
}

/// <summary>
/// Named records on an unlocked volume with atomic commits (shadow paging). Sectors 0 and 1 hold two alternating
/// superblocks (sequence number, location and SHA-256 of the index, own SHA-256). A commit writes the new values and
/// the new index to sectors the committed state does not use, flushes, then writes the superblock into the slot of
/// the older one and flushes again. After a power cut at any point the newest valid superblock describes either the
/// old or the new state, never a torn one. A volume without a valid superblock (never written, or its first commit
/// cut) reads as an empty store.
/// </summary>
public sealed class RecordStore
{
    /// <summary>Longest record name in UTF-8 bytes.</summary>
    public const int MaxNameBytes = 255;

    /// <summary>Largest record value.</summary>
    public const int MaxValueBytes = 4 * 1024 * 1024;

    /// <summary>Most records in the store.</summary>
    public const int MaxRecords = 16384;

    private const int Sector = EncryptedVolume.SectorSize;
    private const int MaxIndexBytes = 12 + (MaxRecords * (1 + MaxNameBytes + 8 + 4 + 32));
    private static readonly byte[] SuperMagic = "ASTSTOR1"u8.ToArray();
    private static readonly byte[] IndexMagic = "ASTIDX01"u8.ToArray();
    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    private readonly EncryptedVolume _volume;
    private readonly Lock _gate = new();
    private SortedDictionary<string, Entry> _index;
    private BitArray _used;
    private bool _failed;

    private readonly record struct Entry(long Sector, int Length, byte[] Sha256);

    private RecordStore(EncryptedVolume volume, ulong sequence, SortedDictionary<string, Entry> index, long indexSector, int indexLength)
    {
        _volume = volume;
        Sequence = sequence;
        _index = index;
        _used = BuildUsedMap(volume.SectorCount, index, indexSector, indexLength);
    }

    /// <summary>Sequence number of the committed state (0 for an empty, never committed store).</summary>
    public ulong Sequence { get; private set; }

    /// <summary>Record names, ordinal order.</summary>
    public IReadOnlyList<string> Names
    {
        get
        {
            lock (_gate)
            {
                return [.. _index.Keys];
            }
        }
    }

    /// <summary>Opens the store on <paramref name="volume"/>; throws <see cref="RecordStoreCorruptException"/> if it does not verify.</summary>
    public static RecordStore Open(EncryptedVolume volume)
    {
        ArgumentNullException.ThrowIfNull(volume);
        if (volume.SectorCount < 4)
        {
            throw new ArgumentException("The volume is too small for a record store.", nameof(volume));
        }
        Superblock? best = null;
        for (var slot = 0; slot < 2; slot++)
        {
            var sb = ReadSuperblock(volume, slot);
            if (sb is not null && (best is null || sb.Value.Sequence > best.Value.Sequence))
            {
                best = sb;
            }
        }
        if (best is null)
        {
            return new RecordStore(volume, 0, new SortedDictionary<string, Entry>(StringComparer.Ordinal), 0, 0);
        }
        var b = best.Value;
        var indexBytes = new byte[SectorsFor(b.IndexLength) * Sector];
        volume.ReadSectors(b.IndexSector, indexBytes);
        if (!SHA256.HashData(indexBytes.AsSpan(0, b.IndexLength)).AsSpan().SequenceEqual(b.IndexSha256))
        {
            throw new RecordStoreCorruptException("The record index does not match its superblock checksum.");
        }
        var index = ParseIndex(indexBytes.AsSpan(0, b.IndexLength), volume.SectorCount);
        return new RecordStore(volume, b.Sequence, index, b.IndexSector, b.IndexLength);
    }

    /// <summary>Returns a record's value, or null when absent; throws <see cref="RecordStoreCorruptException"/> on a checksum mismatch.</summary>
    public byte[]? Get(string name)
    {
        CheckName(name);
        lock (_gate)
        {
            ThrowIfFailed();
            if (!_index.TryGetValue(name, out var e))
            {
                return null;
            }
            if (e.Length == 0)
            {
                return [];
            }
            var buffer = new byte[SectorsFor(e.Length) * Sector];
            _volume.ReadSectors(e.Sector, buffer);
            var value = buffer.AsSpan(0, e.Length).ToArray();
            if (!SHA256.HashData(value).AsSpan().SequenceEqual(e.Sha256))
            {
                throw new RecordStoreCorruptException("A record value does not match its checksum.");
            }
            return value;
        }
    }

    /// <summary>Puts one record atomically.</summary>
    public void Put(string name, ReadOnlySpan<byte> value) => Commit(new RecordBatch().Put(name, value));

    /// <summary>Deletes one record atomically; returns whether it existed.</summary>
    public bool Delete(string name)
    {
        lock (_gate)
        {
            if (!_index.ContainsKey(name))
            {
                return false;
            }
            Commit(new RecordBatch().Delete(name));
            return true;
        }
    }

    /// <summary>Applies <paramref name="batch"/> atomically and durably: afterwards (or after a power cut) all or none of it.</summary>
    public void Commit(RecordBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        lock (_gate)
        {
            ThrowIfFailed();
            try
            {
                CommitLocked(batch);
            }
            catch (RecordStoreFullException)
            {
                // Raised before the superblock is written: the committed state is untouched, the store stays usable.
                throw;
            }
            catch
            {
                // The device may hold either state now; only a reopen knows which.
                _failed = true;
                throw;
            }
        }
    }

    internal static void CheckName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        int bytes;
        try
        {
            bytes = StrictUtf8.GetByteCount(name);
        }
        catch (EncoderFallbackException e)
        {
            throw new ArgumentException("A record name must be valid UTF-8.", nameof(name), e);
        }
        if (bytes is 0 or > MaxNameBytes)
        {
            throw new ArgumentException($"A record name has 1 to {MaxNameBytes} UTF-8 bytes.", nameof(name));
        }
    }

    private void CommitLocked(RecordBatch batch)
    {
        var index = new SortedDictionary<string, Entry>(_index, StringComparer.Ordinal);
        var used = new BitArray(_used);
        foreach (var (name, value) in batch.Changes)
        {
            if (value is null)
            {
                index.Remove(name);
                continue;
            }
            if (value.Length == 0)
            {
                index[name] = new Entry(0, 0, SHA256.HashData(value));
                continue;
            }
            var sectors = SectorsFor(value.Length);
            var start = Allocate(used, sectors);
            var padded = new byte[sectors * Sector];
            value.CopyTo(padded, 0);
            _volume.WriteSectors(start, padded);
            CryptographicOperations.ZeroMemory(padded);
            index[name] = new Entry(start, value.Length, SHA256.HashData(value));
        }
        if (index.Count > MaxRecords)
        {
            throw new RecordStoreFullException($"The store holds at most {MaxRecords} records.");
        }
        var indexBytes = SerializeIndex(index);
        var indexSector = Allocate(used, SectorsFor(indexBytes.Length));
        var indexPadded = new byte[SectorsFor(indexBytes.Length) * Sector];
        indexBytes.CopyTo(indexPadded, 0);
        _volume.WriteSectors(indexSector, indexPadded);
        _volume.Flush();

        var sequence = Sequence + 1;
        var sb = new byte[Sector];
        SuperMagic.CopyTo(sb, 0);
        BinaryPrimitives.WriteUInt64LittleEndian(sb.AsSpan(8), sequence);
        BinaryPrimitives.WriteInt64LittleEndian(sb.AsSpan(16), indexSector);
        BinaryPrimitives.WriteInt32LittleEndian(sb.AsSpan(24), indexBytes.Length);
        SHA256.HashData(indexBytes, sb.AsSpan(32, 32));
        BinaryPrimitives.WriteInt64LittleEndian(sb.AsSpan(64), _volume.SectorCount);
        SHA256.HashData(sb.AsSpan(0, 72), sb.AsSpan(72, 32));
        _volume.WriteSectors((long)(sequence % 2), sb);
        _volume.Flush();

        Sequence = sequence;
        _index = index;
        _used = BuildUsedMap(_volume.SectorCount, index, indexSector, indexBytes.Length);
    }

    private void ThrowIfFailed()
    {
        if (_failed)
        {
            throw new InvalidOperationException("A commit failed part-way; reopen the store to see which state is durable.");
        }
    }

    private static int SectorsFor(int bytes) => Math.Max(1, (bytes + Sector - 1) / Sector);

    private static long Allocate(BitArray used, int sectors)
    {
        var run = 0;
        for (var s = 2; s < used.Length; s++)
        {
            run = used[s] ? 0 : run + 1;
            if (run == sectors)
            {
                var start = s - sectors + 1;
                for (var i = start; i <= s; i++)
                {
                    used[i] = true;
                }
                return start;
            }
        }
        throw new RecordStoreFullException("The record store is full.");
    }

    private static BitArray BuildUsedMap(long sectorCount, SortedDictionary<string, Entry> index, long indexSector, int indexLength)
    {
        if (sectorCount > int.MaxValue)
        {
            throw new RecordStoreCorruptException("The volume is too large for the record store.");
        }
        var used = new BitArray((int)sectorCount);
        used[0] = true;
        used[1] = true;
        void Mark(long start, int bytes)
        {
            var n = SectorsFor(bytes);
            if (start < 2 || start > sectorCount - n)
            {
                throw new RecordStoreCorruptException("A record extent lies outside the volume.");
            }
            for (var i = start; i < start + n; i++)
            {
                if (used[(int)i])
                {
                    throw new RecordStoreCorruptException("Two record extents overlap.");
                }
                used[(int)i] = true;
            }
        }
        if (indexLength > 0)
        {
            Mark(indexSector, indexLength);
        }
        foreach (var e in index.Values.Where(e => e.Length > 0))
        {
            Mark(e.Sector, e.Length);
        }
        return used;
    }

    private readonly record struct Superblock(ulong Sequence, long IndexSector, int IndexLength, byte[] IndexSha256);

    private static Superblock? ReadSuperblock(EncryptedVolume volume, int slot)
    {
        var sb = new byte[Sector];
        volume.ReadSectors(slot, sb);
        if (!sb.AsSpan(0, 8).SequenceEqual(SuperMagic) || !SHA256.HashData(sb.AsSpan(0, 72)).AsSpan().SequenceEqual(sb.AsSpan(72, 32)))
        {
            return null;
        }
        var sequence = BinaryPrimitives.ReadUInt64LittleEndian(sb.AsSpan(8));
        var indexSector = BinaryPrimitives.ReadInt64LittleEndian(sb.AsSpan(16));
        var indexLength = BinaryPrimitives.ReadInt32LittleEndian(sb.AsSpan(24));
        var sectors = BinaryPrimitives.ReadInt64LittleEndian(sb.AsSpan(64));
        if (sequence % 2 != (ulong)slot || indexLength is < 12 or > MaxIndexBytes || indexSector < 2
            || indexSector > volume.SectorCount - SectorsFor(indexLength) || sectors > volume.SectorCount)
        {
            throw new RecordStoreCorruptException("A superblock verifies but its fields are out of range.");
        }
        return new Superblock(sequence, indexSector, indexLength, sb.AsSpan(32, 32).ToArray());
    }

    private static byte[] SerializeIndex(SortedDictionary<string, Entry> index)
    {
        using var ms = new MemoryStream();
        ms.Write(IndexMagic);
        Span<byte> n = stackalloc byte[12];
        BinaryPrimitives.WriteInt32LittleEndian(n, index.Count);
        ms.Write(n[..4]);
        foreach (var (name, e) in index)
        {
            var nameBytes = StrictUtf8.GetBytes(name);
            ms.WriteByte((byte)nameBytes.Length);
            ms.Write(nameBytes);
            BinaryPrimitives.WriteInt64LittleEndian(n, e.Sector);
            BinaryPrimitives.WriteInt32LittleEndian(n[8..], e.Length);
            ms.Write(n);
            ms.Write(e.Sha256);
        }
        return ms.ToArray();
    }

    private static SortedDictionary<string, Entry> ParseIndex(ReadOnlySpan<byte> data, long sectorCount)
    {
        var index = new SortedDictionary<string, Entry>(StringComparer.Ordinal);
        if (data.Length < 12 || !data[..8].SequenceEqual(IndexMagic))
        {
            throw new RecordStoreCorruptException("The record index has no magic.");
        }
        var count = BinaryPrimitives.ReadInt32LittleEndian(data[8..]);
        if (count is < 0 or > MaxRecords)
        {
            throw new RecordStoreCorruptException("The record index count is out of range.");
        }
        var pos = 12;
        for (var i = 0; i < count; i++)
        {
            if (pos + 1 > data.Length)
            {
                throw new RecordStoreCorruptException("The record index is truncated.");
            }
            int len = data[pos++];
            if (len == 0 || pos + len + 44 > data.Length)
            {
                throw new RecordStoreCorruptException("The record index is truncated.");
            }
            string name;
            try
            {
                name = StrictUtf8.GetString(data.Slice(pos, len));
            }
            catch (DecoderFallbackException)
            {
                throw new RecordStoreCorruptException("A record name is not UTF-8.");
            }
            pos += len;
            var sector = BinaryPrimitives.ReadInt64LittleEndian(data[pos..]);
            var length = BinaryPrimitives.ReadInt32LittleEndian(data[(pos + 8)..]);
            var sha = data.Slice(pos + 12, 32).ToArray();
            pos += 44;
            if (length is < 0 or > MaxValueBytes || (length > 0 && (sector < 2 || sector >= sectorCount)))
            {
                throw new RecordStoreCorruptException("A record extent is out of range.");
            }
            if (!index.TryAdd(name, new Entry(sector, length, sha)))
            {
                throw new RecordStoreCorruptException("The record index has duplicate names.");
            }
        }
        if (pos != data.Length)
        {
            throw new RecordStoreCorruptException("The record index has trailing bytes.");
        }
        return index;
    }
}
