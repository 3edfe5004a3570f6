namespace Asterism.Disk;

/// <summary>What <see cref="DiskKeyRotation.Rotate(Luks2Image, ReadOnlySpan{byte}, ReadOnlySpan{byte})"/> found and did.</summary>
public enum DiskKeyRotationResult
{
    /// <summary>Keyslot 0 opened with the old key and now opens with the new one only.</summary>
    Rotated,

    /// <summary>Keyslot 0 already opens with the new key (an earlier run got past the header flip): nothing written.</summary>
    AlreadyRotated,

    /// <summary>Keyslot 0 opens with neither key: nothing written.</summary>
    Rejected,
}

/// <summary>
/// One disk's part of a master-secret rotation (issue #16 item 4): keyslot 0 — the only slot the node's unlock path
/// tries — moves from the disk key of generation N to that of generation N+1 in one crash-safe header update
/// (<see cref="Luks2Image.ChangePassphrase"/>: new material into a free area, flush, primary header, flush, secondary
/// header, flush, then the old area is wiped). A power cut at any write therefore leaves keyslot 0 opening with the
/// old or the new key, never neither; running it again after a cut finishes the job or finds it done. The caller
/// reports the new generation to the registry only after this returned, so the control plane never forgets the old
/// generation while a disk may still need it.
/// </summary>
public static class DiskKeyRotation
{
    /// <summary>Keyslot 0 of <paramref name="image"/> from <paramref name="oldKey"/> to <paramref name="newKey"/>; idempotent.</summary>
    public static DiskKeyRotationResult Rotate(Luks2Image image, ReadOnlySpan<byte> oldKey, ReadOnlySpan<byte> newKey)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (newKey.IsEmpty || oldKey.SequenceEqual(newKey))
        {
            throw new ArgumentException("the new key must be non-empty and differ from the old one", nameof(newKey));
        }
        // New key first: after a cut past the flip the old key no longer opens slot 0, and one KDF settles it.
        if (image.CheckKey(newKey, 0) == KeyCheckResult.Accepted)
        {
            return DiskKeyRotationResult.AlreadyRotated;
        }
        return image.ChangePassphrase(0, oldKey, newKey) == KeyCheckResult.Accepted
            ? DiskKeyRotationResult.Rotated
            : DiskKeyRotationResult.Rejected;
    }

    /// <summary>The same on an image file (a mounted one too: only the header and keyslot areas are written, never the payload).</summary>
    public static DiskKeyRotationResult Rotate(string imagePath, ReadOnlySpan<byte> oldKey, ReadOnlySpan<byte> newKey)
    {
        using var disk = StateDisk.Open(imagePath);
        return disk.RotateKey(oldKey, newKey);
    }
}
