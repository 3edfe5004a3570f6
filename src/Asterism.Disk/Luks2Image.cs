using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace Asterism.Disk;

/// <summary>Parameters of a new image (defaults: Asterism's state disk format).</summary>
public sealed record Luks2FormatOptions
{
    /// <summary>
    /// PBKDF2-SHA256 iterations for keyslots. Asterism passphrases are 256 random bits, so a slow KDF buys nothing;
    /// 1000 is cryptsetup's minimum (<c>--pbkdf-force-iterations</c>).
    /// </summary>
    public int KeyslotIterations { get; init; } = 1000;

    /// <summary>PBKDF2-SHA256 iterations of the volume key digest (the key is 512 random bits).</summary>
    public int DigestIterations { get; init; } = 1000;

    /// <summary>The LUKS2 UUID (lowercase canonical form); null makes a random one.</summary>
    public string? Uuid { get; init; }
}

/// <summary>
/// A LUKS2 image handled in user space: format, unlock (PBKDF2 / Argon2 keyslots), keyslot and token updates.
/// Every update writes new keyslot material to an unused area first, then both header copies with sequence id + 1
/// (each followed by a flush), so a power cut between any two writes leaves a header that opens with the old or
/// the new passphrase. Not thread-safe: callers serialise (see <see cref="StateDisk"/>).
/// </summary>
public sealed class Luks2Image : IDisposable
{
    /// <summary>Size of one keyslot area as cryptsetup allocates it for a 512-bit key (4000 stripes, 4 KiB aligned).</summary>
    public const long KeyslotAreaSize = 258048;

    /// <summary>Payload offset of a new image: 16 MiB.</summary>
    public const long PayloadOffset = 16L * 1024 * 1024;

    /// <summary>Longest passphrase accepted.</summary>
    public const int MaxPassphraseLength = 8192;

    private readonly IBlockDevice _device;
    private readonly bool _ownsDevice;
    private readonly long _kdfBudget;

    private Luks2Image(IBlockDevice device, bool ownsDevice, Luks2Header header, long kdfBudget)
    {
        _device = device;
        _ownsDevice = ownsDevice;
        _kdfBudget = kdfBudget;
        Header = header;
    }

    /// <summary>The validated header in use.</summary>
    public Luks2Header Header { get; private set; }

    /// <summary>The underlying device.</summary>
    public IBlockDevice Device => _device;

    /// <summary>Opens an image file and validates its header (default KDF budget).</summary>
    public static Luks2Image Open(string path, bool writable) => Open(path, writable, Luks2KdfCost.DefaultHeaderBudget);

    /// <summary>
    /// Opens an image file and validates its header; trying every keyslot must cost at most <paramref name="kdfBudget"/>
    /// units (<see cref="Luks2KdfCost"/>), and so must every header this instance writes.
    /// </summary>
    public static Luks2Image Open(string path, bool writable, long kdfBudget)
    {
        var device = FileBlockDevice.Open(path, writable);
        try
        {
            return Open(device, ownsDevice: true, kdfBudget);
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }

    /// <summary>Validates the header of a device; throws <see cref="Luks2HeaderException"/> when it is refused.</summary>
    public static Luks2Image Open(IBlockDevice device, bool ownsDevice) => Open(device, ownsDevice, Luks2KdfCost.DefaultHeaderBudget);

    /// <summary>Validates the header of a device against <paramref name="kdfBudget"/>; throws <see cref="Luks2HeaderException"/> when it is refused.</summary>
    public static Luks2Image Open(IBlockDevice device, bool ownsDevice, long kdfBudget) =>
        new(device, ownsDevice, Luks2Header.Read(device, kdfBudget), kdfBudget);

    /// <summary>
    /// Formats <paramref name="device"/>: LUKS2, aes-xts-plain64, 512-bit key, 4096-byte sectors, payload at 16 MiB,
    /// keyslot 0 (PBKDF2-SHA256) for <paramref name="passphrase"/>, a new random UUID.
    /// </summary>
    public static Luks2Image Format(IBlockDevice device, bool ownsDevice, ReadOnlySpan<byte> passphrase, Luks2FormatOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        CheckPassphrase(passphrase);
        options ??= new Luks2FormatOptions();
        if (device.Length < PayloadOffset + Luks2Metadata.SectorSize || device.Length % Luks2Metadata.SectorSize != 0)
        {
            throw new ArgumentException("The image must be a multiple of 4096 bytes and larger than 16 MiB.", nameof(device));
        }
        using var volumeKey = VolumeKey.Generate();
        var slot = new Luks2Keyslot(0, Luks2Header.KeyslotAreaStart, KeyslotAreaSize, Pbkdf2(options.KeyslotIterations), null);
        var metadata = new Luks2Metadata
        {
            Keyslots = new SortedDictionary<int, Luks2Keyslot> { [0] = slot },
            Tokens = [],
            SegmentOffset = PayloadOffset,
            Digest = MakeDigest(volumeKey, [0], options.DigestIterations),
            JsonSize = Luks2Header.HeaderSize - Luks2Header.BinarySize,
            KeyslotsSize = PayloadOffset - Luks2Header.KeyslotAreaStart,
            ConfigFlags = [],
        };
        if (options.Uuid is not null && (!Guid.TryParseExact(options.Uuid, "D", out _) || options.Uuid != options.Uuid.ToLowerInvariant()))
        {
            throw new ArgumentException("the UUID must be a lowercase 36-character UUID", nameof(options));
        }
        var header = new Luks2Header(options.Uuid ?? Guid.NewGuid().ToString("D"), "", "", 1,
            RandomNumberGenerator.GetBytes(64), RandomNumberGenerator.GetBytes(64), metadata);
        device.Write(0, new byte[Luks2Header.KeyslotAreaStart]);
        var image = new Luks2Image(device, ownsDevice, header, Luks2KdfCost.DefaultHeaderBudget);
        image.WriteKeyslotMaterial(slot, passphrase, volumeKey);
        image.WriteHeaders(header);
        return image;
    }

    /// <summary>
    /// Tries every keyslot by priority (or only <paramref name="keyslot"/>; Rejected when it does not exist); on success
    /// returns the volume key. Either way the work is bounded by the header's KDF budget, checked when it was read.
    /// </summary>
    public KeyCheckResult Unlock(ReadOnlySpan<byte> passphrase, out VolumeKey? volumeKey, int? keyslot = null)
    {
        volumeKey = null;
        if (passphrase.Length is 0 or > MaxPassphraseLength)
        {
            return KeyCheckResult.Rejected;
        }
        // Like cryptsetup: without an explicit keyslot, high-priority slots first and priority-0 ("ignore") slots skipped.
        var candidates = keyslot is { } only
            ? Header.Metadata.Keyslots.Values.Where(k => k.Id == only)
            : Header.Metadata.Keyslots.Values.Where(k => k.Priority != 0).OrderByDescending(k => k.Priority ?? 1);
        foreach (var slot in candidates)
        {
            volumeKey = TryKeyslot(slot, passphrase);
            if (volumeKey is not null)
            {
                return KeyCheckResult.Accepted;
            }
        }
        return KeyCheckResult.Rejected;
    }

    /// <summary>Checks a passphrase without keeping the volume key.</summary>
    public KeyCheckResult CheckKey(ReadOnlySpan<byte> passphrase, int? keyslot = null)
    {
        var result = Unlock(passphrase, out var key, keyslot);
        key?.Dispose();
        return result;
    }

    /// <summary>Checks that <paramref name="volumeKey"/> is this image's volume key (digest comparison).</summary>
    public bool VerifyVolumeKey(VolumeKey volumeKey)
    {
        ArgumentNullException.ThrowIfNull(volumeKey);
        var d = Header.Metadata.Digest;
        Span<byte> computed = stackalloc byte[32];
        Rfc2898DeriveBytes.Pbkdf2(volumeKey.Bytes, d.Salt, computed, d.Iterations, HashAlgorithmName.SHA256);
        return CryptographicOperations.FixedTimeEquals(computed, d.Value);
    }

    /// <summary>
    /// Replaces the passphrase of <paramref name="keyslot"/>: new material goes to a free area, then the header
    /// flips, then the old area is wiped. Returns Rejected (and changes nothing) when the old passphrase is wrong.
    /// </summary>
    public KeyCheckResult ChangePassphrase(int keyslot, ReadOnlySpan<byte> oldPassphrase, ReadOnlySpan<byte> newPassphrase, Luks2FormatOptions? options = null)
    {
        CheckPassphrase(newPassphrase);
        if (!Header.Metadata.Keyslots.TryGetValue(keyslot, out var old))
        {
            return KeyCheckResult.Rejected;
        }
        using var key = TryKeyslot(old, oldPassphrase.Length is 0 or > MaxPassphraseLength ? [] : oldPassphrase);
        if (key is null)
        {
            return KeyCheckResult.Rejected;
        }
        var slot = new Luks2Keyslot(keyslot, FindFreeArea(), KeyslotAreaSize, Pbkdf2((options ?? new()).KeyslotIterations), old.Priority);
        WriteKeyslotMaterial(slot, newPassphrase, key);
        var metadata = Header.Metadata.Clone();
        metadata.Keyslots[keyslot] = slot;
        Commit(metadata);
        WipeArea(old);
        return KeyCheckResult.Accepted;
    }

    /// <summary>Adds a PBKDF2 keyslot for <paramref name="passphrase"/> (lowest free id unless given); returns its id.</summary>
    public int AddKeyslot(VolumeKey volumeKey, ReadOnlySpan<byte> passphrase, int? id = null, Luks2FormatOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(volumeKey);
        CheckPassphrase(passphrase);
        if (!VerifyVolumeKey(volumeKey))
        {
            throw new ArgumentException("The volume key does not belong to this image.", nameof(volumeKey));
        }
        var slotId = id ?? Enumerable.Range(0, Luks2Metadata.MaxSlots).First(i => !Header.Metadata.Keyslots.ContainsKey(i));
        if (slotId is < 0 or >= Luks2Metadata.MaxSlots || Header.Metadata.Keyslots.ContainsKey(slotId))
        {
            throw new ArgumentException($"Keyslot {slotId} is in use or out of range.", nameof(id));
        }
        var slot = new Luks2Keyslot(slotId, FindFreeArea(), KeyslotAreaSize, Pbkdf2((options ?? new()).KeyslotIterations), null);
        WriteKeyslotMaterial(slot, passphrase, volumeKey);
        var metadata = Header.Metadata.Clone();
        metadata.Keyslots[slotId] = slot;
        metadata.Digest = metadata.Digest with { Keyslots = [.. metadata.Digest.Keyslots, slotId] };
        Commit(metadata);
        return slotId;
    }

    /// <summary>Removes a keyslot (never the last one) and wipes its area after the header update.</summary>
    public void RemoveKeyslot(int id)
    {
        if (!Header.Metadata.Keyslots.TryGetValue(id, out var slot))
        {
            throw new ArgumentException($"Keyslot {id} does not exist.", nameof(id));
        }
        if (Header.Metadata.Keyslots.Count == 1)
        {
            throw new InvalidOperationException("Refusing to remove the last keyslot.");
        }
        var metadata = Header.Metadata.Clone();
        metadata.Keyslots.Remove(id);
        metadata.Digest = metadata.Digest with { Keyslots = [.. metadata.Digest.Keyslots.Where(k => k != id)] };
        foreach (var (tokenId, raw) in Header.Metadata.Tokens)
        {
            metadata.Tokens[tokenId] = WithoutKeyslot(raw, id);
        }
        Commit(metadata);
        WipeArea(slot);
    }

    /// <summary>Raw JSON of token <paramref name="id"/>, or null.</summary>
    public string? GetToken(int id) => Header.Metadata.Tokens.GetValueOrDefault(id);

    /// <summary>Sets (or with null removes) token <paramref name="id"/>; other tokens are kept verbatim.</summary>
    public void SetToken(int id, string? rawJson)
    {
        if (id is < 0 or >= Luks2Metadata.MaxSlots)
        {
            throw new ArgumentOutOfRangeException(nameof(id));
        }
        var metadata = Header.Metadata.Clone();
        if (rawJson is null)
        {
            metadata.Tokens.Remove(id);
        }
        else
        {
            try
            {
                metadata.Tokens[id] = Luks2Metadata.ValidateTokenJson(rawJson, metadata.Keyslots);
            }
            catch (Luks2HeaderException e)
            {
                throw new ArgumentException("The token is not valid LUKS2 token JSON.", nameof(rawJson), e);
            }
        }
        if (metadata.ToJson().Length >= Luks2Header.HeaderSize - Luks2Header.BinarySize)
        {
            throw new ArgumentException("The token does not fit the 12 KiB JSON area.", nameof(rawJson));
        }
        Commit(metadata);
    }

    /// <summary>Re-reads the header from the device.</summary>
    public void Reload() => Header = Luks2Header.Read(_device, _kdfBudget);

    /// <inheritdoc />
    public void Dispose()
    {
        if (_ownsDevice)
        {
            _device.Dispose();
        }
    }

    private static void CheckPassphrase(ReadOnlySpan<byte> passphrase)
    {
        if (passphrase.Length is 0 or > MaxPassphraseLength)
        {
            throw new ArgumentException($"A passphrase has 1 to {MaxPassphraseLength} bytes.", nameof(passphrase));
        }
    }

    private static Luks2Kdf Pbkdf2(int iterations)
    {
        if (iterations is < Luks2Metadata.MinPbkdf2Iterations or > Luks2Metadata.MaxPbkdf2Iterations)
        {
            throw new ArgumentOutOfRangeException(nameof(iterations));
        }
        return new Luks2Kdf("pbkdf2", iterations, 0, 0, RandomNumberGenerator.GetBytes(32));
    }

    private static Luks2Digest MakeDigest(VolumeKey key, int[] keyslots, int iterations)
    {
        var salt = RandomNumberGenerator.GetBytes(32);
        var digest = new byte[32];
        Rfc2898DeriveBytes.Pbkdf2(key.Bytes, salt, digest, iterations, HashAlgorithmName.SHA256);
        return new Luks2Digest(0, keyslots, iterations, salt, digest);
    }

    private static string WithoutKeyslot(string raw, int id)
    {
        var node = JsonNode.Parse(raw)!.AsObject();
        if (node["keyslots"] is JsonArray slots && slots.Any(s => s?.GetValue<string>() == id.ToString(System.Globalization.CultureInfo.InvariantCulture)))
        {
            var kept = slots.Where(s => s?.GetValue<string>() != id.ToString(System.Globalization.CultureInfo.InvariantCulture))
                .Select(s => (JsonNode?)JsonValue.Create(s!.GetValue<string>())).ToArray();
            node["keyslots"] = new JsonArray(kept);
            return node.ToJsonString();
        }
        return raw;
    }

    private VolumeKey? TryKeyslot(Luks2Keyslot slot, ReadOnlySpan<byte> passphrase)
    {
        var materialSize = (int)Luks2Metadata.AfMaterialSize;
        var material = GC.AllocateUninitializedArray<byte>(materialSize, pinned: true);
        Span<byte> areaKey = stackalloc byte[Luks2Metadata.KeyBytes];
        Span<byte> candidate = stackalloc byte[Luks2Metadata.KeyBytes];
        try
        {
            _device.Read(slot.AreaOffset, material);
            KeyslotKdf.Derive(slot.Kdf, passphrase, areaKey);
            using (var xts = new AesXts(areaKey))
            {
                // dm-crypt convention for keyslot areas: 512-byte units, tweak = unit index within the area.
                xts.DecryptUnits(material, material, 512, 0, 1);
            }
            AfSplitter.Merge(material, candidate, Luks2Metadata.Stripes);
            var key = new VolumeKey(candidate);
            if (VerifyVolumeKey(key))
            {
                return key;
            }
            key.Dispose();
            return null;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(material);
            CryptographicOperations.ZeroMemory(areaKey);
            CryptographicOperations.ZeroMemory(candidate);
        }
    }

    private void WriteKeyslotMaterial(Luks2Keyslot slot, ReadOnlySpan<byte> passphrase, VolumeKey volumeKey)
    {
        var area = GC.AllocateArray<byte>((int)slot.AreaSize, pinned: true);
        Span<byte> areaKey = stackalloc byte[Luks2Metadata.KeyBytes];
        try
        {
            var material = area.AsSpan(0, (int)Luks2Metadata.AfMaterialSize);
            AfSplitter.Split(volumeKey.Bytes, material, Luks2Metadata.Stripes);
            KeyslotKdf.Derive(slot.Kdf, passphrase, areaKey);
            using (var xts = new AesXts(areaKey))
            {
                xts.EncryptUnits(material, material, 512, 0, 1);
            }
            _device.Write(slot.AreaOffset, area);
            _device.Flush();
        }
        finally
        {
            CryptographicOperations.ZeroMemory(area);
            CryptographicOperations.ZeroMemory(areaKey);
        }
    }

    private void WipeArea(Luks2Keyslot slot)
    {
        _device.Write(slot.AreaOffset, new byte[slot.AreaSize]);
        _device.Flush();
    }

    private long FindFreeArea()
    {
        var used = Header.Metadata.Keyslots.Values.OrderBy(k => k.AreaOffset).ToList();
        var end = Luks2Header.KeyslotAreaStart + Header.Metadata.KeyslotsSize;
        var candidate = Luks2Header.KeyslotAreaStart;
        foreach (var k in used)
        {
            if (candidate + KeyslotAreaSize <= k.AreaOffset)
            {
                break;
            }
            candidate = Math.Max(candidate, k.AreaOffset + k.AreaSize);
        }
        if (candidate + KeyslotAreaSize > end)
        {
            throw new InvalidOperationException("No free keyslot area left.");
        }
        return candidate;
    }

    private void Commit(Luks2Metadata metadata)
    {
        // Validate what we are about to write with the same strict parser readers use.
        _ = Luks2Metadata.Parse(metadata.ToJson(), Luks2Header.HeaderSize, _kdfBudget);
        var next = Header.With(metadata, Header.SequenceId + 1);
        WriteHeaders(next);
        Header = next;
    }

    private void WriteHeaders(Luks2Header header)
    {
        // One copy at a time, each made durable before the next: at any cut one copy is complete and valid,
        // and readers take the valid copy with the highest sequence id.
        _device.Write(0, header.Serialize(0));
        _device.Flush();
        _device.Write(Luks2Header.HeaderSize, header.Serialize(1));
        _device.Flush();
    }
}
