using System.Security.Cryptography;
using System.Text;

namespace Asterism.Crypto;

/// <summary>
/// The cluster KMS: every key a node needs is HKDF-SHA256 (RFC 5869) of the master secret with an info string
/// "key-&lt;id&gt;", 32 bytes, exactly as Constellation derives them so its test vectors hold.
/// </summary>
public static class KeyDerivation
{
    /// <summary>Length of every derived key.</summary>
    public const int KeyLength = 32;

    /// <summary>Length of the cluster's measurement salt (random, chosen at init; the cluster ID's HKDF salt).</summary>
    public const int MeasurementSaltLength = 32;

    /// <summary>Prefix of every info string.</summary>
    public const string InfoPrefix = "key-";

    /// <summary>Key id of the measurement secret.</summary>
    public const string MeasurementSecretId = "measurementSecret";

    /// <summary>Key id of the cluster ID.</summary>
    public const string ClusterIdId = "clusterID";

    /// <summary>HKDF-SHA256(secret, salt, "key-" + id), 32 bytes.</summary>
    public static SecretBytes DeriveKey(ReadOnlySpan<byte> secret, ReadOnlySpan<byte> salt, string id)
    {
        ArgumentException.ThrowIfNullOrEmpty(id);
        if (salt.IsEmpty)
        {
            throw new ArgumentException("the salt must not be empty", nameof(salt));
        }
        var info = Encoding.ASCII.GetBytes(InfoPrefix + id);
        var output = new byte[KeyLength];
        HKDF.DeriveKey(HashAlgorithmName.SHA256, secret, output, salt, info);
        return new SecretBytes(output);
    }

    /// <summary>
    /// The state-disk passphrase of the disk with <paramref name="diskUuid"/>. The UUID must be the canonical
    /// lowercase 36-character form: the info string is case-sensitive, so an upper-case UUID would silently
    /// derive a different key. Upper case is rejected rather than normalised so a caller bug cannot hide.
    /// </summary>
    public static SecretBytes DeriveDiskKey(MasterSecret master, string diskUuid)
    {
        ArgumentNullException.ThrowIfNull(master);
        ValidateDiskUuid(diskUuid);
        return DeriveKey(master.Key, master.Salt, diskUuid);
    }

    /// <summary>
    /// The largest master-secret generation anything accepts (shares, node state, etcd's records, the CLI): far beyond
    /// any real rotation count (daily for a thousand years), far below int overflow of <c>generation + 1</c>.
    /// </summary>
    public const int MaxGeneration = 1_000_000;

    /// <summary>
    /// The state-disk passphrase of <paramref name="diskUuid"/> in master-secret generation <paramref name="generation"/>
    /// (issue #16 rotation): generation 1 is <see cref="DeriveDiskKey(MasterSecret, string)"/> unchanged (Constellation's
    /// vectors); later generations also name the generation in the info string ("key-" + UUID + "@gen" + G), so a
    /// secret reused by mistake for a later generation still derives a different key.
    /// </summary>
    public static SecretBytes DeriveDiskKey(MasterSecret master, string diskUuid, int generation)
    {
        ArgumentNullException.ThrowIfNull(master);
        ArgumentOutOfRangeException.ThrowIfLessThan(generation, 1);
        if (generation == 1)
        {
            return DeriveDiskKey(master, diskUuid);
        }
        ValidateDiskUuid(diskUuid);
        return DeriveKey(master.Key, master.Salt, diskUuid + "@gen" + generation.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// The key check of a master secret: DeriveClusterId(its measurement secret, measurement salt). For the cluster's
    /// first secret it is the cluster ID itself; after a rotation the cluster ID stays and a node keeps the check of the
    /// generation its disk key comes from, so a pushed or rejoined measurement secret can still be verified.
    /// </summary>
    public static byte[] DeriveKeyCheck(MasterSecret master, ReadOnlySpan<byte> measurementSalt)
    {
        using var measurementSecret = DeriveMeasurementSecret(master);
        return DeriveClusterId(measurementSecret.Span, measurementSalt);
    }

    /// <summary>HKDF(master key, master salt, "key-measurementSecret").</summary>
    public static SecretBytes DeriveMeasurementSecret(MasterSecret master)
    {
        ArgumentNullException.ThrowIfNull(master);
        return DeriveKey(master.Key, master.Salt, MeasurementSecretId);
    }

    /// <summary>HKDF(measurement secret, measurement salt, "key-clusterID"): not secret, but only the key holders can compute it.</summary>
    public static byte[] DeriveClusterId(ReadOnlySpan<byte> measurementSecret, ReadOnlySpan<byte> measurementSalt)
    {
        using var id = DeriveKey(measurementSecret, measurementSalt, ClusterIdId);
        return id.ToArray();
    }

    /// <summary>True for a canonical lowercase UUID (8-4-4-4-12 hex digits).</summary>
    public static bool IsCanonicalDiskUuid(string? uuid)
    {
        if (uuid is null || uuid.Length != 36)
        {
            return false;
        }
        for (var i = 0; i < uuid.Length; i++)
        {
            var c = uuid[i];
            var dash = i is 8 or 13 or 18 or 23;
            if (dash ? c != '-' : !(c is >= '0' and <= '9' or >= 'a' and <= 'f'))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Throws <see cref="ArgumentException"/> unless <paramref name="diskUuid"/> is canonical lowercase.</summary>
    public static void ValidateDiskUuid(string diskUuid)
    {
        if (!IsCanonicalDiskUuid(diskUuid))
        {
            throw new ArgumentException(
                "disk UUID must be the lowercase 36-character form (8-4-4-4-12 hex digits)", nameof(diskUuid));
        }
    }
}
