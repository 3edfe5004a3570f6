using Etcdserverpb;
using Google.Protobuf;

namespace Asterism.ControlPlane;

/// <summary>The key layout in etcd and small helpers for ranges and transactions.</summary>
internal static class EtcdKeys
{
    public const string NodesPrefix = "/asterism/nodes/";
    public const string AuditEntriesPrefix = "/asterism/audit/entries/";
    public const string AuditHead = "/asterism/audit/head";

    /// <summary>Largest value the registry or the audit log accepts from etcd (a record with a certificate fits easily).</summary>
    public const int MaxValueBytes = 64 * 1024;

    public static ByteString Bytes(string key) => ByteString.CopyFromUtf8(key);

    /// <summary>The end of the prefix range: the prefix with its last byte incremented.</summary>
    public static ByteString PrefixEnd(string prefix)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(prefix);
        bytes[^1]++;
        return ByteString.CopyFrom(bytes);
    }

    public static string AuditEntry(long sequence) => AuditEntriesPrefix + sequence.ToString("D20", System.Globalization.CultureInfo.InvariantCulture);

    public static Compare Absent(string key) => new()
    {
        Key = Bytes(key),
        Target = Compare.Types.CompareTarget.Create,
        Result = Compare.Types.CompareResult.Equal,
        CreateRevision = 0,
    };

    public static Compare ModifiedAt(string key, long revision) => new()
    {
        Key = Bytes(key),
        Target = Compare.Types.CompareTarget.Mod,
        Result = Compare.Types.CompareResult.Equal,
        ModRevision = revision,
    };

    public static RequestOp Put(string key, byte[] value) => new() { RequestPut = new PutRequest { Key = Bytes(key), Value = ByteString.CopyFrom(value) } };
}
