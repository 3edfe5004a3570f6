using System.Security.Cryptography;
using System.Text.Json;
using Asterism.Attestation.Identities;
using Asterism.Config;
using Asterism.Crypto;

namespace Asterism.Cli;

/// <summary>One generation of the master secret as the workspace knows it: its number and its key check (hex).</summary>
/// <param name="Generation">1 for the secret <c>init</c> made, +1 with every completed rotation.</param>
/// <param name="KeyCheck">
/// <see cref="KeyDerivation.DeriveKeyCheck"/> of that generation's secret with the cluster's measurement salt, lowercase
/// hex; for generation 1 it is the cluster ID. Not secret (it is what a node compares a pushed measurement secret
/// with); only a holder of the secret can compute it.
/// </param>
public sealed record SecretGeneration(int Generation, string KeyCheck);

/// <summary>
/// Which master-secret generation the workspace holds, and the rotation it has begun (issue #16 item 4). The cluster
/// ID in <c>asterism-state.yaml</c> never changes (src/Asterism.Node/README.md, "Master-secret rotation"); what moves is
/// the generation and its key check:
/// <list type="bullet">
/// <item><c>asterism-keygeneration.json</c> (0600): <c>{"generation": G, "keyCheck": hex}</c> of the secret the
/// workspace's file or shares hold; absent = generation 1 with the cluster ID as key check.</item>
/// <item><c>asterism-rotation.json</c> (0600): the rotation begun from this workspace, <c>{"generation": G+1,
/// "keyCheck": hex, "shares": DIR|null}</c>. A pending file whose generation is not above the current one is left over
/// from a completion that crashed before deleting it, and means nothing.</item>
/// </list>
/// A secret is recognised by its key check alone: a secret that derives neither the current nor the pending check is
/// not this cluster's (or belongs to a void generation), and nothing is sent with it.
/// </summary>
public sealed class KeyGenerations
{
    /// <summary>The workspace's current generation and key check.</summary>
    public const string FileName = "asterism-keygeneration.json";

    /// <summary>The rotation begun from this workspace (target generation and the new secret's key check).</summary>
    public const string PendingFileName = "asterism-rotation.json";

    private const int MaxFileBytes = 4096;

    private KeyGenerations(string directory, string clusterId, SecretGeneration current, SecretGeneration? pending, string measurementSalt)
    {
        Directory = directory;
        ClusterId = clusterId;
        Current = current;
        Pending = pending is not null && pending.Generation > current.Generation ? pending : null;
        StalePending = pending is not null && Pending is null;
        MeasurementSalt = measurementSalt;
    }

    /// <summary>The workspace directory.</summary>
    public string Directory { get; }

    /// <summary>The cluster's stable ID (generation 1's key check).</summary>
    public string ClusterId { get; }

    /// <summary>The generation of the workspace's secret (file or shares).</summary>
    public SecretGeneration Current { get; }

    /// <summary>The rotation begun from this workspace and not finished in it, or null.</summary>
    public SecretGeneration? Pending { get; }

    /// <summary>True when a pending file is left over from a completion that crashed after moving the generation.</summary>
    public bool StalePending { get; }

    /// <summary>The cluster's measurement salt (hex).</summary>
    public string MeasurementSalt { get; }

    /// <summary><c>asterism-keygeneration.json</c>.</summary>
    public string CurrentPath => Path.Combine(Directory, FileName);

    /// <summary><c>asterism-rotation.json</c>.</summary>
    public string PendingPath => Path.Combine(Directory, PendingFileName);

    /// <summary>The generations of an initialized workspace; a malformed file is one <see cref="CliError"/> naming it.</summary>
    public static KeyGenerations Load(string directory, ClusterState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var clusterId = state.ClusterValues.ClusterId ?? throw new CliError($"the cluster in {directory} is not initialized yet");
        var salt = state.ClusterValues.MeasurementSalt ?? throw new CliError($"the cluster in {directory} is not initialized yet");
        var currentPath = Path.Combine(directory, FileName);
        var current = File.Exists(currentPath) ? Read(currentPath).Generation : new SecretGeneration(1, clusterId);
        if (current.Generation == 1 && current.KeyCheck != clusterId)
        {
            throw new CliError($"{currentPath}: generation 1's key check must be the cluster ID {clusterId}");
        }
        var pendingPath = Path.Combine(directory, PendingFileName);
        var pending = File.Exists(pendingPath) ? Read(pendingPath) : default;
        return new KeyGenerations(directory, clusterId, current, pending.Generation, salt) { PendingShares = pending.Shares };
    }

    /// <summary>The workspace state of <see cref="Workspace"/>'s directory.</summary>
    public static KeyGenerations Load(Workspace workspace)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        return Load(workspace.Directory, workspace.LoadState());
    }

    /// <summary>A cluster that never rotated: generation 1 only, its key check the cluster ID.</summary>
    public static KeyGenerations ForGenerationOne(string clusterId, string measurementSalt) =>
        new("", clusterId, new SecretGeneration(1, clusterId), null, measurementSalt);

    /// <summary>Where the pending rotation wrote its new shares, or null when it wrote a secret file.</summary>
    public string? PendingShares { get; private init; }

    /// <summary>The key check of <paramref name="master"/> with this cluster's salt (hex).</summary>
    public string KeyCheckOf(MasterSecret master) =>
        Convert.ToHexStringLower(KeyDerivation.DeriveKeyCheck(master, Convert.FromHexString(MeasurementSalt)));

    /// <summary>The generation whose key check <paramref name="master"/> derives (current or pending), or null.</summary>
    public int? GenerationOf(MasterSecret master)
    {
        var check = Convert.FromHexString(KeyCheckOf(master));
        if (CryptographicOperations.FixedTimeEquals(check, Convert.FromHexString(Current.KeyCheck)))
        {
            return Current.Generation;
        }
        if (Pending is not null && CryptographicOperations.FixedTimeEquals(check, Convert.FromHexString(Pending.KeyCheck)))
        {
            return Pending.Generation;
        }
        return null;
    }

    /// <summary>The key check a secret of <paramref name="generation"/> must derive, or a <see cref="CliError"/> saying why none can.</summary>
    public string KeyCheckFor(int generation, string what)
    {
        if (generation == Current.Generation)
        {
            return Current.KeyCheck;
        }
        if (Pending is not null && generation == Pending.Generation)
        {
            return Pending.KeyCheck;
        }
        if (generation < Current.Generation)
        {
            throw new CliError($"{what} of a void generation ({generation}): the cluster's master secret is of generation {Current.Generation} since a rotation completed, and generation {generation} opens no disk");
        }
        throw new CliError($"{what} of generation {generation}, which this workspace does not know (its secret is of generation {Current.Generation}{(Pending is null ? "" : $", a rotation to {Pending.Generation} is pending")})");
    }

    /// <summary>Records the rotation begun (0600, atomically).</summary>
    public static void WritePending(string directory, SecretGeneration target, string? sharesDirectory) =>
        IdentityFiles.WritePrivateFile(Path.Combine(directory, PendingFileName), JsonSerializer.SerializeToUtf8Bytes(
            new GenerationFile { Generation = target.Generation, KeyCheck = target.KeyCheck, Shares = sharesDirectory }));

    /// <summary>Makes <paramref name="generation"/> the workspace's current one (0600, through a temp file and rename).</summary>
    public static void WriteCurrent(string directory, SecretGeneration generation) =>
        IdentityFiles.WritePrivateFile(Path.Combine(directory, FileName), JsonSerializer.SerializeToUtf8Bytes(
            new GenerationFile { Generation = generation.Generation, KeyCheck = generation.KeyCheck }));

    private static (SecretGeneration Generation, string? Shares) Read(string path)
    {
        GenerationFile? file;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read);
            var buffer = new byte[MaxFileBytes + 1];
            var length = stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
            if (length > MaxFileBytes)
            {
                throw new CliError($"{path} is larger than {MaxFileBytes} bytes; it is not a key-generation file");
            }
            file = JsonSerializer.Deserialize<GenerationFile>(buffer.AsSpan(0, length), JsonOptions);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            throw new CliError($"{path} cannot be read: {e.GetType().Name}");
        }
        if (file is null || file.Generation < 1 || file.KeyCheck is null || file.KeyCheck.Length != 64 || !file.KeyCheck.All(char.IsAsciiHexDigitLower))
        {
            throw new CliError($"{path} is malformed (a generation of 1 or more and a 64-hex-digit keyCheck are needed)");
        }
        return (new SecretGeneration(file.Generation, file.KeyCheck), file.Shares);
    }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
    };

    private sealed class GenerationFile
    {
        [System.Text.Json.Serialization.JsonPropertyName("generation")]
        public int Generation { get; set; }

        [System.Text.Json.Serialization.JsonPropertyName("keyCheck")]
        public string? KeyCheck { get; set; }

        [System.Text.Json.Serialization.JsonPropertyName("shares")]
        [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
        public string? Shares { get; set; }
    }
}
