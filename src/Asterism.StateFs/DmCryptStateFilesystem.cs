using System.Security.Cryptography;
using System.Text;

namespace Asterism.StateFs;

/// <summary>
/// ext4 on a dm-crypt mapping: <c>cryptsetup open --type luks2 --key-file - --key-slot N IMAGE NAME</c> (the key on
/// stdin, never on a command line), mkfs.ext4 at first use, <c>mount</c>. Needs root and device-mapper
/// (/dev/mapper/control); without them it refuses before running anything.
/// </summary>
public sealed class DmCryptStateFilesystem(string controlPath = DmCryptStateFilesystem.DefaultControlPath) : IStateFilesystem
{
    /// <summary>The device-mapper control node.</summary>
    public const string DefaultControlPath = "/dev/mapper/control";

    /// <summary>Whether this machine has device-mapper.</summary>
    public static bool IsAvailable => File.Exists(DefaultControlPath);

    /// <inheritdoc />
    public string Name => "dm-crypt";

    /// <summary>The mapping name for an image: <c>asterism-</c> + 16 hex digits of SHA-256 of its full path.</summary>
    public static string MappingName(string imagePath) =>
        "asterism-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Path.GetFullPath(imagePath))))[..16];

    /// <inheritdoc />
    public IReadOnlyList<string> DescribeCommands(StateMountRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var name = MappingName(request.ImagePath);
        var device = "/dev/mapper/" + name;
        var list = new List<string> { string.Join(' ', OpenArguments(request, name).Prepend("cryptsetup")) };
        if (request.FormatIfNoFilesystem)
        {
            list.Add("mkfs.ext4 " + string.Join(' ', Ext4.MkfsArguments(device)) + "   (only when no ext4 superblock)");
        }
        list.Add($"mount -t ext4 -o nosuid,nodev {device} {Path.GetFullPath(request.MountPoint)}");
        return list;
    }

    /// <summary>The commands disposing the mount runs.</summary>
    public static IReadOnlyList<string> DescribeUnmountCommands(StateMountRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return [$"umount {Path.GetFullPath(request.MountPoint)}", $"cryptsetup close {MappingName(request.ImagePath)}"];
    }

    /// <inheritdoc />
    public async Task<IStateMount> MountAsync(StateMountRequest request, ReadOnlyMemory<byte> passphrase, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!File.Exists(controlPath))
        {
            throw new StateFilesystemException(StateFilesystemError.Unsupported,
                $"dm-crypt needs device-mapper, and {controlPath} does not exist on this machine; use the FUSE state filesystem.");
        }
        if (!Environment.IsPrivilegedProcess)
        {
            throw new StateFilesystemException(StateFilesystemError.Unsupported, "dm-crypt needs root (cryptsetup open, mount).");
        }
        var name = MappingName(request.ImagePath);
        var device = "/dev/mapper/" + name;
        Directory.CreateDirectory(request.MountPoint);
        var open = await CommandRunner.RunAsync("cryptsetup", OpenArguments(request, name), passphrase, cancellationToken);
        if (open.ExitCode == 2)
        {
            throw new StateFilesystemException(StateFilesystemError.WrongKey, $"The key does not open keyslot {request.Keyslot} of {request.ImagePath}.");
        }
        if (open.ExitCode != 0)
        {
            throw new StateFilesystemException(StateFilesystemError.ToolFailed, $"cryptsetup open failed (exit {open.ExitCode}): {open.Stderr.Trim()}");
        }
        var mount = new Mount(Path.GetFullPath(request.MountPoint), device, name);
        try
        {
            if (!Ext4.HasSuperblock(device))
            {
                if (!request.FormatIfNoFilesystem)
                {
                    throw new StateFilesystemException(StateFilesystemError.NoFilesystem, $"No ext4 filesystem in {request.ImagePath} and formatting was not asked for.");
                }
                await CommandRunner.CheckedAsync("mkfs.ext4", Ext4.MkfsArguments(device), cancellationToken);
            }
            await CommandRunner.CheckedAsync("mount", ["-t", "ext4", "-o", "nosuid,nodev", device, mount.MountPoint], cancellationToken);
            mount.Mounted = true;
            File.SetUnixFileMode(mount.MountPoint, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            return mount;
        }
        catch
        {
            await mount.DisposeAsync();
            throw;
        }
    }

    private static string[] OpenArguments(StateMountRequest request, string name) =>
        ["open", "--type", "luks2", "--key-file", "-", "--key-slot", request.Keyslot.ToString(System.Globalization.CultureInfo.InvariantCulture),
            Path.GetFullPath(request.ImagePath), name];

    private sealed class Mount(string mountPoint, string device, string name) : IStateMount
    {
        private int _disposed;

        public string MountPoint { get; } = mountPoint;

        public string BlockPath { get; } = device;

        public bool Mounted { get; set; }

        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }
            try
            {
                if (Mounted)
                {
                    await CommandRunner.CheckedAsync("umount", [MountPoint], CancellationToken.None);
                }
            }
            finally
            {
                await CommandRunner.CheckedAsync("cryptsetup", ["close", name], CancellationToken.None);
            }
        }
    }
}
