using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace Asterism.StateFs;

/// <summary>
/// ext4 on a dm-crypt mapping: <c>cryptsetup open --type luks2 --key-file - --key-slot N IMAGE NAME</c> (the key on
/// stdin, never on a command line), mkfs.ext4 at first use, <c>mount</c>. Needs root and device-mapper
/// (/dev/mapper/control answering DM_VERSION); without them it refuses before running anything.
/// </summary>
public sealed partial class DmCryptStateFilesystem(string controlPath = DmCryptStateFilesystem.DefaultControlPath) : IStateFilesystem
{
    /// <summary>The device-mapper control node.</summary>
    public const string DefaultControlPath = "/dev/mapper/control";

    // _IOWR(0xfd, DM_VERSION_CMD = 0, struct dm_ioctl): struct dm_ioctl is 312 bytes on every architecture.
    private const int DmIoctlSize = 312;
    private const uint DmVersionIoctl = (3u << 30) | (DmIoctlSize << 16) | (0xfdu << 8);
    private const uint DmVersionMajor = 4;
    private const int ORdWr = 0x2;
    private const int OCloExec = 0x80000;

    private static readonly Lazy<bool> Available = new(() => AnswersDmVersion(DefaultControlPath));

    /// <summary>
    /// Whether this process can use device-mapper: the control node opens and the kernel's driver answers
    /// DM_VERSION with the ioctl interface version 4. A node alone proves nothing (a container can have
    /// /dev/mapper/control without the driver, and cryptsetup then fails with "Cannot initialize device-mapper").
    /// Probed once per process; false for a process that may not open the node (not root).
    /// </summary>
    public static bool IsAvailable => Available.Value;

    /// <summary>Opens <paramref name="controlPath"/> and asks the device-mapper driver for its ioctl version.</summary>
    internal static bool AnswersDmVersion(string controlPath)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }
        var fd = open(controlPath, ORdWr | OCloExec);
        if (fd < 0)
        {
            return false;
        }
        try
        {
            // struct dm_ioctl in: version {4, 0, 0} (the interface we speak), data_size = the struct itself.
            var dm = new byte[DmIoctlSize];
            BitConverter.TryWriteBytes(dm.AsSpan(0), DmVersionMajor);
            BitConverter.TryWriteBytes(dm.AsSpan(12), (uint)DmIoctlSize);
            return ioctl(fd, DmVersionIoctl, dm) == 0 && BitConverter.ToUInt32(dm, 0) == DmVersionMajor;
        }
        finally
        {
            close(fd);
        }
    }

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
        if (!AnswersDmVersion(controlPath))
        {
            throw new StateFilesystemException(StateFilesystemError.Unsupported,
                $"dm-crypt needs device-mapper, and the kernel's device-mapper driver does not answer on {controlPath}; use the FUSE state filesystem.");
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

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(int fd, nuint request, byte[] argument);

    [LibraryImport("libc")]
    private static partial int close(int fd);
}
