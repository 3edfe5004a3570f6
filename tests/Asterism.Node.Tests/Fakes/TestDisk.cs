using System.Net;
using System.Security.Cryptography;
using Asterism.Crypto;
using Asterism.Disk;
using Asterism.Node.State;
using Asterism.Node.Unlock;

namespace Asterism.Node.Tests.Fakes;

/// <summary>
/// One cluster's secrets and one node's initialized state disk, as a reboot finds it: keyslot 0 holds the disk key
/// derived from the master secret, the node state names the cluster ID, the token says initialized. Real LUKS2 on a
/// temporary file; the keyslot KDF is cheap (1000 PBKDF2 iterations), so each disk costs milliseconds. The state
/// "filesystem" of these unit tests is a plain directory behind <see cref="Volume"/>, opened only for a key that
/// opens keyslot 0 (<c>MountedStateVolumeTests</c> mounts the real one).
/// </summary>
public sealed class TestDisk : IDisposable
{
    private const long ImageSize = 24L * 1024 * 1024;
    private readonly string _dir;

    private TestDisk(string dir, MasterSecret master, byte[] salt, StateDisk disk)
    {
        _dir = dir;
        Master = master;
        MeasurementSalt = salt;
        Disk = disk;
        StateRoot = Path.Combine(dir, "state");
        Volume = new DirectoryStateVolume(disk, StateRoot);
    }

    /// <summary>The plain directory standing in for the mounted state filesystem.</summary>
    public string StateRoot { get; }

    /// <summary>Opens <see cref="StateRoot"/> for keys that open keyslot 0; counts what is open.</summary>
    public DirectoryStateVolume Volume { get; }

    public MasterSecret Master { get; }

    public byte[] MeasurementSalt { get; }

    /// <summary>The disk, reopened without a key as the node finds it at boot.</summary>
    public StateDisk Disk { get; }

    public string Uuid => Disk.Uuid;

    public string ImagePath => Disk.ImagePath;

    /// <summary>The random passphrase of a <see cref="CreateFormatted"/> disk (first boot, before any ticket).</summary>
    public byte[] InitialPassphrase { get; private init; } = [];

    /// <summary>A first boot's disk: formatted with a random passphrase, token false, nothing stored yet.</summary>
    public static TestDisk CreateFormatted()
    {
        var dir = Directory.CreateTempSubdirectory("asterism-node-tests-").FullName;
        var passphrase = RandomNumberGenerator.GetBytes(KeyDerivation.KeyLength);
        var disk = StateDisk.Format(Path.Combine(dir, "state.img"), ImageSize, passphrase, Guid.NewGuid().ToString());
        return new TestDisk(dir, MasterSecret.Generate(), RandomNumberGenerator.GetBytes(KeyDerivation.MeasurementSaltLength), disk)
        {
            InitialPassphrase = passphrase,
        };
    }

    public static TestDisk CreateInitialized(NodeRole role = NodeRole.ControlPlane)
    {
        var dir = Directory.CreateTempSubdirectory("asterism-node-tests-").FullName;
        var master = MasterSecret.Generate();
        var salt = RandomNumberGenerator.GetBytes(KeyDerivation.MeasurementSaltLength);
        var path = Path.Combine(dir, "state.img");
        var uuid = Guid.NewGuid().ToString();
        using (var diskKey = KeyDerivation.DeriveDiskKey(master, uuid))
        using (var measurementSecret = KeyDerivation.DeriveMeasurementSecret(master))
        using (var disk = StateDisk.Format(path, ImageSize, diskKey.Span, uuid))
        {
            var state = new NodeState { Role = role, NodeName = "node-0", MeasurementSalt = salt, ClusterId = KeyDerivation.DeriveClusterId(measurementSecret.Span, salt) };
            state.WriteTo(new NodeStateDirectory(Path.Combine(dir, "state"), null, "directory"));
            disk.SetInitialized(true);
        }
        return new TestDisk(dir, master, salt, StateDisk.Open(path));
    }

    /// <summary>The keys a JoinService or the operator would send this disk.</summary>
    public ReceivedKeys RightKeys(string source = "test") =>
        new(KeyDerivation.DeriveDiskKey(Master, Uuid), KeyDerivation.DeriveMeasurementSecret(Master), source);

    /// <summary>Keys of another cluster's master secret: open nothing here.</summary>
    public static ReceivedKeys ForeignKeys(string uuid)
    {
        using var other = MasterSecret.Generate();
        return new ReceivedKeys(KeyDerivation.DeriveDiskKey(other, uuid), KeyDerivation.DeriveMeasurementSecret(other), "attacker");
    }

    /// <summary>This disk's real key with another cluster's measurement secret: opens keyslot 0 but derives another cluster ID.</summary>
    public ReceivedKeys RightDiskKeyForeignSecret()
    {
        using var other = MasterSecret.Generate();
        return new ReceivedKeys(KeyDerivation.DeriveDiskKey(Master, Uuid), KeyDerivation.DeriveMeasurementSecret(other), "attacker");
    }

    public byte[] ImageHash()
    {
        using var stream = new FileStream(ImagePath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return SHA256.HashData(stream);
    }

    public NodeOptions Options(TimeSpan interval, TimeSpan timeout, NodeRole role = NodeRole.ControlPlane) => new()
    {
        Name = "node-0",
        Role = role,
        Address = IPAddress.Loopback,
        DiskPath = ImagePath,
        NodeDirectory = _dir,
        MetadataEndpoint = new Uri("http://127.0.0.1:1"),
        RejoinInterval = interval,
        RejoinTimeout = timeout,
    };

    public void Dispose()
    {
        Volume.Dispose();
        Disk.Dispose();
        Master.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}

/// <summary>
/// A state volume for unit tests: a plain directory, handed out only when the key opens keyslot 0 of the disk (as the
/// real mount's unlock would); counts open handles so tests can see a refused offer released its mount.
/// </summary>
public sealed class DirectoryStateVolume(StateDisk disk, string root) : IStateVolume, IDisposable
{
    private int _open;

    /// <summary>How many opened directories are not disposed yet.</summary>
    public int Open => Volatile.Read(ref _open);

    /// <summary>How many times a key opened the volume.</summary>
    public int Opened { get; private set; }

    public Task<NodeStateDirectory?> OpenAsync(ReadOnlyMemory<byte> diskKey, bool formatIfEmpty, CancellationToken cancellationToken)
    {
        if (!disk.TryUnlock(diskKey.Span))
        {
            return Task.FromResult<NodeStateDirectory?>(null);
        }
        Directory.CreateDirectory(root);
        Interlocked.Increment(ref _open);
        Opened++;
        return Task.FromResult<NodeStateDirectory?>(new NodeStateDirectory(root, new Release(this), "directory"));
    }

    public void Dispose()
    {
    }

    private sealed class Release(DirectoryStateVolume owner) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            Interlocked.Decrement(ref owner._open);
            return ValueTask.CompletedTask;
        }
    }
}
