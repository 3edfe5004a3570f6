using System.Security.Cryptography;
using Asterism.Attestation.Identities;
using Asterism.Cloud;
using Asterism.Crypto;
using Asterism.Protocol.ClusterApi;

namespace Asterism.Cli.Recovery;

/// <summary>
/// Where the registry copy (<see cref="RegistryCopy"/>) lives in a workspace and how the CLI keeps it: <c>init</c>
/// writes the first one, every command that hears from the cluster API refreshes it under a lock, and <c>recover</c>
/// loads it, verified with the master secret it was given, before it contacts any node.
/// </summary>
/// <remarks>
/// Refreshes merge rather than overwrite: a node revoked in the copy stays revoked (the registry never un-revokes, and
/// `node remove` keeps a revoked node's deny record), so a `node list` whose answer was read just before a concurrent
/// `node revoke` cannot drop the revocation that command wrote. Sequence numbers only grow.
/// </remarks>
public sealed class RegistryCopyStore(string workspace)
{
    private static readonly TimeSpan LockWait = TimeSpan.FromSeconds(10);

    /// <summary>The admin folder (0700) that holds the credential and the copy.</summary>
    public string Folder { get; } = Path.Combine(workspace, AdminCredential.FolderName);

    /// <summary><c>admin/registry.json</c>.</summary>
    public string CopyPath => Path.Combine(Folder, RegistryCopy.FileName);

    /// <summary><c>admin/registry.head</c>: the highest sequence written.</summary>
    public string HeadPath => Path.Combine(Folder, RegistryCopy.HeadFileName);

    /// <summary><c>admin/registry-mac.key</c>: the MAC key, derived from the master secret at init.</summary>
    public string KeyPath => Path.Combine(Folder, RegistryCopy.KeyFileName);

    private string LockPath => Path.Combine(Folder, "registry.lock");

    private string MasterSecretPath => Path.Combine(workspace, MasterSecret.DefaultFileName);

    /// <summary>
    /// At init: stores the MAC key derived from <paramref name="master"/> and writes sequence 1 (a workspace reused after
    /// `terminate --purge` starts over: a new cluster, a new key, a new head).
    /// </summary>
    public RegistryCopy Initialize(MasterSecret master, string clusterId, IEnumerable<CopiedNode> nodes, TimeProvider? time = null)
    {
        OwnerOnly.CreateDirectory(Folder);
        using var key = RegistryCopy.DeriveMacKey(master);
        using var held = Lock();
        IdentityFiles.WritePrivateFile(KeyPath, key.Span);
        var copy = new RegistryCopy(clusterId, 1, (time ?? TimeProvider.System).GetUtcNow().ToUnixTimeMilliseconds(), [.. nodes], CopyPath);
        Write(copy, key.Span);
        return copy;
    }

    /// <summary>
    /// Merges what the cluster API just said (<paramref name="fromCluster"/>, null when it could not be listed) and a
    /// revocation this process just made (<paramref name="revokedNow"/>) into the copy. Returns the copy written, or
    /// throws a <see cref="CliError"/> that says why none could be (the caller prints it as a warning: the cluster's
    /// own change already happened).
    /// </summary>
    public RegistryCopy Refresh(string clusterId, IReadOnlyList<CopiedNode>? fromCluster, string? revokedNow = null, TimeProvider? time = null)
    {
        var now = (time ?? TimeProvider.System).GetUtcNow().ToUnixTimeMilliseconds();
        using var key = StoredKey();
        using var held = Lock();
        RegistryCopy? old = null;
        long head = 0;
        try
        {
            old = File.Exists(CopyPath) ? RegistryCopy.Parse(ReadLimited(CopyPath, RegistryCopy.MaxFileBytes), key.Span, CopyPath) : null;
            head = File.Exists(HeadPath) ? RegistryCopy.ParseHead(ReadLimited(HeadPath, 4096), key.Span) : 0;
        }
        catch (RegistryCopyException) when (fromCluster is not null)
        {
            // The cluster's answer is authoritative and came over mutual TLS: it replaces a copy that does not verify.
            // Its revocations are the registry's, which never forgets one.
            old = null;
        }
        catch (RegistryCopyException e)
        {
            throw new CliError($"registry copy {CopyPath} {e.Message}; not updated (run 'asterism node list' while the cluster API answers to rewrite it)");
        }
        if (old is not null && old.ClusterId != clusterId)
        {
            old = null;
        }
        var merged = new Dictionary<string, CopiedNode>(StringComparer.Ordinal);
        foreach (var n in fromCluster ?? old?.Nodes ?? [])
        {
            merged[n.Name] = n;
        }
        foreach (var n in old?.Nodes.Where(n => n.Revoked) ?? [])
        {
            merged[n.Name] = merged.TryGetValue(n.Name, out var current) ? current with { Revoked = true, RevokedAtUnixMs = current.Revoked ? current.RevokedAtUnixMs : n.RevokedAtUnixMs } : n;
        }
        if (revokedNow is not null)
        {
            merged[revokedNow] = merged.TryGetValue(revokedNow, out var current)
                ? current.Revoked ? current : current with { Revoked = true, RevokedAtUnixMs = now }
                : new CopiedNode(revokedNow, "", "", true, now);
        }
        var copy = new RegistryCopy(clusterId, Math.Max(old?.Sequence ?? 0, head) + 1, now, [.. merged.Values], CopyPath);
        Write(copy, key.Span);
        return copy;
    }

    /// <summary>
    /// What <c>recover</c> consults before it contacts any node: the copy verified with the key derived from the secret
    /// the operator gave, of this cluster, not older than the head. Null (with <paramref name="warning"/>) when the
    /// workspace has none at all (initialized before copies existed); a copy that is missing while its head says one
    /// was written, or one that does not verify, is a <see cref="CliError"/> naming the file: nothing may be pushed.
    /// </summary>
    public RegistryCopy? LoadForRecovery(MasterSecret master, string? clusterId, out string? warning) =>
        LoadForRecovery([master], clusterId, out warning);

    /// <summary>
    /// <inheritdoc cref="LoadForRecovery(MasterSecret, string?, out string?)"/> With a rotation pending (or a completion
    /// that crashed midway) the copy and its head may be MAC'd under either generation's key: each file must verify
    /// under the key of one of <paramref name="masters"/>, all of them secrets of this cluster the caller checked.
    /// </summary>
    public RegistryCopy? LoadForRecovery(IReadOnlyList<MasterSecret> masters, string? clusterId, out string? warning)
    {
        ArgumentNullException.ThrowIfNull(masters);
        warning = null;
        var keys = masters.Select(RegistryCopy.DeriveMacKey).ToList();
        try
        {
            return LoadForRecovery(keys, clusterId, ref warning);
        }
        finally
        {
            foreach (var key in keys)
            {
                key.Dispose();
            }
        }
    }

    private RegistryCopy? LoadForRecovery(List<SecretBytes> keys, string? clusterId, ref string? warning)
    {
        const string Refusal = "refusing to recover: nothing was sent (see 'Registry copy' in src/Asterism.Cli/README.md; --ignore-registry-copy skips the check)";
        long head = 0;
        if (File.Exists(HeadPath))
        {
            try
            {
                var bytes = ReadLimited(HeadPath, 4096);
                head = WithAnyKey(keys, key => RegistryCopy.ParseHead(bytes, key.Span));
            }
            catch (RegistryCopyException e)
            {
                throw new CliError($"registry head {HeadPath} {e.Message}; {Refusal}");
            }
        }
        if (!File.Exists(CopyPath))
        {
            if (head > 0)
            {
                throw new CliError($"registry copy {CopyPath} is missing, but {HeadPath} says copy {head} was written; {Refusal}");
            }
            warning = $"no registry copy at {CopyPath} (the workspace predates it): revocations cannot be checked, a revoked control plane that waits would be pushed its key; 'asterism power stop' revoked nodes first, and run 'asterism node list' once the cluster API answers to write the copy";
            return null;
        }
        RegistryCopy copy;
        try
        {
            var bytes = ReadLimited(CopyPath, RegistryCopy.MaxFileBytes);
            copy = WithAnyKey(keys, key => RegistryCopy.Parse(bytes, key.Span, CopyPath));
        }
        catch (RegistryCopyException e)
        {
            throw new CliError($"registry copy {CopyPath} {e.Message}; {Refusal}");
        }
        if (clusterId is not null && copy.ClusterId != clusterId)
        {
            throw new CliError($"registry copy {CopyPath} is of cluster {copy.ClusterId}, not this workspace's cluster {clusterId}; {Refusal}");
        }
        if (copy.Sequence < head)
        {
            throw new CliError($"registry copy {CopyPath} is older (sequence {copy.Sequence}) than the last one this workspace wrote (sequence {head}, {HeadPath}): an older copy replaced a newer one; {Refusal}");
        }
        return copy;
    }

    /// <summary>The first key under which <paramref name="parse"/> succeeds; the first key's refusal when none does.</summary>
    private static T WithAnyKey<T>(List<SecretBytes> keys, Func<SecretBytes, T> parse)
    {
        RegistryCopyException? first = null;
        foreach (var key in keys)
        {
            try
            {
                return parse(key);
            }
            catch (RegistryCopyException e)
            {
                first ??= e;
            }
        }
        throw first ?? new RegistryCopyException("cannot be verified: no key");
    }

    /// <summary>
    /// The MAC key of the next generation, stored when a rotation begins (<c>admin/registry-mac.next.key</c>): with
    /// shares the new secret is in memory only then, and the copy must move to that key when the rotation completes.
    /// </summary>
    public string NextKeyPath => Path.Combine(Folder, "registry-mac.next.key");

    /// <summary>At rotation begin: stores the MAC key derived from the new secret (0600), nothing else changes.</summary>
    public void StoreNextKey(MasterSecret next)
    {
        OwnerOnly.CreateDirectory(Folder);
        using var key = RegistryCopy.DeriveMacKey(next);
        IdentityFiles.WritePrivateFile(NextKeyPath, key.Span);
    }

    /// <summary>
    /// At rotation completion: rewrites the copy and its head under the next key (copy first, head second, each
    /// atomically), then makes the next key the stored one. Idempotent: without a next key there is nothing to do. A
    /// crash between the steps leaves files under either key, which <see cref="LoadForRecovery(IReadOnlyList{MasterSecret}, string?, out string?)"/>
    /// accepts while the workspace still records the rotation as pending (the workspace moves its generation only
    /// after this). A workspace without a copy just keeps the key.
    /// </summary>
    public void MoveToNextKey()
    {
        if (!File.Exists(NextKeyPath))
        {
            return;
        }
        using var held = Lock();
        using var next = ReadKey(NextKeyPath);
        SecretBytes? old = File.Exists(KeyPath) ? ReadKey(KeyPath) : null;
        try
        {
            var keys = old is null ? new List<SecretBytes> { next } : [old, next];
            if (File.Exists(CopyPath))
            {
                var copy = WithAnyKey(keys, key => RegistryCopy.Parse(ReadLimited(CopyPath, RegistryCopy.MaxFileBytes), key.Span, CopyPath));
                var head = File.Exists(HeadPath) ? WithAnyKey(keys, key => RegistryCopy.ParseHead(ReadLimited(HeadPath, 4096), key.Span)) : 0;
                var moved = new RegistryCopy(copy.ClusterId, Math.Max(copy.Sequence, head) + 1, copy.WrittenAtUnixMs, copy.Nodes, CopyPath);
                Write(moved, next.Span);
            }
            File.Move(NextKeyPath, KeyPath, overwrite: true);
        }
        catch (RegistryCopyException e)
        {
            throw new CliError($"registry copy {CopyPath} {e.Message}; it was not moved to the new secret's key ('asterism node list' rewrites it once the cluster API answers, then run 'asterism secret rotate --complete' again)");
        }
        finally
        {
            old?.Dispose();
        }
    }

    private static SecretBytes ReadKey(string path)
    {
        if (OwnerOnly.IsOpenToOthers(path))
        {
            throw new CliError($"{path} is accessible by group or others; run {OwnerOnly.ChmodHint(path)}");
        }
        var bytes = ReadLimited(path, 64);
        if (bytes.Length != KeyDerivation.KeyLength)
        {
            CryptographicOperations.ZeroMemory(bytes);
            throw new CliError($"{path} is not a registry-copy key ({bytes.Length} bytes, expected {KeyDerivation.KeyLength})");
        }
        return new SecretBytes(bytes);
    }

    /// <summary>The copy's view of what the cluster API listed.</summary>
    public static IReadOnlyList<CopiedNode> FromCluster(ListNodesResponse response)
    {
        ArgumentNullException.ThrowIfNull(response);
        return [.. response.Nodes.Select(n => new CopiedNode(n.Name, n.Role, n.DiskUuid, n.Revoked, n.Revoked ? n.RevokedAtUnixMs : 0))];
    }

    /// <summary>
    /// The stored key; in a workspace initialized before copies existed it is derived once from the master secret file
    /// when there is one (with only shares there is none, and no copy can be kept: said once, by the caller).
    /// </summary>
    private SecretBytes StoredKey()
    {
        if (File.Exists(KeyPath))
        {
            if (OwnerOnly.IsOpenToOthers(KeyPath))
            {
                throw new CliError($"{KeyPath} is accessible by group or others; run {OwnerOnly.ChmodHint(KeyPath)}");
            }
            var bytes = ReadLimited(KeyPath, 64);
            if (bytes.Length != KeyDerivation.KeyLength)
            {
                CryptographicOperations.ZeroMemory(bytes);
                throw new CliError($"{KeyPath} is not a registry-copy key ({bytes.Length} bytes, expected {KeyDerivation.KeyLength}); no registry copy was written");
            }
            return new SecretBytes(bytes);
        }
        if (!File.Exists(MasterSecretPath))
        {
            throw new CliError($"no registry copy is kept: {KeyPath} is missing and no master secret is in the workspace to derive it (a cluster initialized with --shares before copies existed); 'asterism recover' cannot check revocations while the control plane is down");
        }
        using var master = Workspace.LoadMasterSecret(MasterSecretPath);
        var key = RegistryCopy.DeriveMacKey(master);
        OwnerOnly.CreateDirectory(Folder);
        IdentityFiles.WritePrivateFile(KeyPath, key.Span);
        return key;
    }

    private void Write(RegistryCopy copy, ReadOnlySpan<byte> key)
    {
        // Copy first, head second: a crash in between leaves a copy newer than the head, never an older one.
        IdentityFiles.WritePrivateFile(CopyPath, copy.Serialize(key));
        IdentityFiles.WritePrivateFile(HeadPath, RegistryCopy.SerializeHead(copy.Sequence, key));
    }

    /// <summary>An exclusive lock (flock) on <c>admin/registry.lock</c>, so two CLI processes never interleave read-merge-write.</summary>
    private FileStream Lock()
    {
        OwnerOnly.CreateDirectory(Folder);
        var deadline = DateTime.UtcNow + LockWait;
        while (true)
        {
            try
            {
                var options = OwnerOnly.Options(FileMode.OpenOrCreate, FileAccess.ReadWrite);
                options.Share = FileShare.None;
                return new FileStream(LockPath, options);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(50);
            }
            catch (IOException)
            {
                throw new CliError($"{LockPath} is held by another asterism command for more than {LockWait.TotalSeconds:0} s; the registry copy was not updated");
            }
        }
    }

    /// <summary>Reads at most <paramref name="limit"/> + 1 bytes: a file that reports a small size and never ends is refused, not slurped.</summary>
    private static byte[] ReadLimited(string path, int limit)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read);
            var buffer = new byte[limit + 1];
            var total = 0;
            int read;
            while (total < buffer.Length && (read = stream.Read(buffer, total, buffer.Length - total)) > 0)
            {
                total += read;
            }
            var bytes = buffer[..total];
            CryptographicOperations.ZeroMemory(buffer);
            return bytes;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliError($"{path} cannot be read: {e.GetType().Name}");
        }
    }
}
