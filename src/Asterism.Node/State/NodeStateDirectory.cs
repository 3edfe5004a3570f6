namespace Asterism.Node.State;

/// <summary>
/// The node's state as files: the root of the mounted state filesystem (<c>NODE_DIR/state</c>, 0700) and where
/// each piece lives below it. Disposing releases the mount (unmount, loop device, FUSE connection, key); the node
/// does so only after every service that writes here has stopped.
/// </summary>
public sealed class NodeStateDirectory : IAsyncDisposable
{
    /// <summary>Role, name, measurement salt and cluster ID (JSON).</summary>
    public const string NodeStateFile = "asterism/node_state.json";

    /// <summary>Control planes only: the cluster's master secret (JSON, 0600).</summary>
    public const string MasterSecretFile = "asterism/master_secret.json";

    /// <summary>Control planes only: the attestation policy the JoinService enforces (JSON, 0600).</summary>
    public const string PolicyFile = "asterism/attestation_policy.json";

    /// <summary>The workload API's values, one file per key.</summary>
    public const string WorkloadFolder = "workload";

    /// <summary>How often this disk booted (ASCII decimal).</summary>
    public const string BootCountFile = "workload-meta/boot-count";

    private readonly IAsyncDisposable? _mount;
    private int _disposed;

    /// <summary>A state directory at <paramref name="root"/>, released with <paramref name="mount"/> (null: a plain directory, tests).</summary>
    public NodeStateDirectory(string root, IAsyncDisposable? mount, string kind)
    {
        Root = Path.GetFullPath(root);
        _mount = mount;
        Kind = kind;
    }

    /// <summary>The filesystem root.</summary>
    public string Root { get; }

    /// <summary>How it is mounted, for logs ("fuse+loop", "fuse+fuse2fs", "dm-crypt", "directory").</summary>
    public string Kind { get; }

    /// <summary>Absolute path of a file named relative to the root.</summary>
    public string PathOf(string relative) => Path.Combine(Root, relative);

    /// <summary>The workload's data directory.</summary>
    public string WorkloadDirectory => PathOf(WorkloadFolder);

    /// <summary>Reads a file below the root, or null when it does not exist.</summary>
    public byte[]? ReadOrNull(string relative)
    {
        try
        {
            return File.ReadAllBytes(PathOf(relative));
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    /// <summary>Writes a file below the root atomically and durably (its directory is created 0700 when missing).</summary>
    public void Write(string relative, ReadOnlySpan<byte> content)
    {
        var path = PathOf(relative);
        AtomicFile.CreateDirectory(Path.GetDirectoryName(path)!);
        AtomicFile.Write(path, content);
    }

    /// <summary>Deletes a file below the root (durably: the directory is synced); nothing when it does not exist.</summary>
    public void Delete(string relative)
    {
        var path = PathOf(relative);
        if (File.Exists(path))
        {
            File.Delete(path);
            AtomicFile.SyncDirectory(Path.GetDirectoryName(path)!);
        }
    }

    /// <summary>Removes what interrupted writes left in the node's directories; returns how many files.</summary>
    public int RemoveLeftovers() =>
        AtomicFile.RemoveLeftovers(PathOf("asterism")) + AtomicFile.RemoveLeftovers(WorkloadDirectory) + AtomicFile.RemoveLeftovers(PathOf("workload-meta"));

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0 && _mount is not null)
        {
            await _mount.DisposeAsync();
        }
    }
}
