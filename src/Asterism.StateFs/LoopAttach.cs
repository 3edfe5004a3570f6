using System.Runtime.InteropServices;

namespace Asterism.StateFs;

/// <summary>
/// What <c>losetup -f --show -b 4096 [-r] FILE</c> and <c>mount -t ext4 -o nosuid,nodev[,ro] DEV DIR</c> do, as
/// system calls from this process: LOOP_CTL_GET_FREE, LOOP_CONFIGURE (Linux ≥ 5.8) and mount(2). A node mounts its
/// state filesystem on the recover path, while the operator waits; two child processes there (exec, dynamic
/// linking of libmount/libblkid/libselinux, .NET's process and pipe machinery on first use) cost more than the
/// mount itself on a loaded machine. Same kernel objects, same flags: the cleanup and unmount paths are unchanged.
/// </summary>
internal static partial class LoopAttach
{
    private const int ORdOnly = 0x0;
    private const int ORdWr = 0x2;
    private const int OCloExec = 0x80000;
    private const ulong LoopCtlGetFree = 0x4C82;
    private const ulong LoopConfigure = 0x4C0A;
    private const uint LoFlagsReadOnly = 1;
    private const ulong MsRdOnly = 1;
    private const ulong MsNoSuid = 2;
    private const ulong MsNoDev = 4;
    private const int Ebusy = 16;
    private const int Einval = 22;
    private const int Enotty = 25;

    // Another process may take the free device between LOOP_CTL_GET_FREE and LOOP_CONFIGURE (EBUSY); losetup retries too.
    private const int Attempts = 16;

    /// <summary>
    /// Attaches <paramref name="file"/> to a free loop device with 4096-byte logical blocks; returns its path
    /// (<c>/dev/loopN</c>), or null when the kernel has no LOOP_CONFIGURE (the caller then runs losetup).
    /// </summary>
    public static string? TryAttach(string file, bool readOnly)
    {
        var backing = open(file, (readOnly ? ORdOnly : ORdWr) | OCloExec);
        if (backing < 0)
        {
            throw Failed($"open {file}", Marshal.GetLastPInvokeError());
        }
        try
        {
            var control = open("/dev/loop-control", ORdWr | OCloExec);
            if (control < 0)
            {
                throw Failed("open /dev/loop-control", Marshal.GetLastPInvokeError());
            }
            try
            {
                for (var attempt = 0; attempt < Attempts; attempt++)
                {
                    var number = ioctl(control, LoopCtlGetFree, 0);
                    if (number < 0)
                    {
                        throw Failed("LOOP_CTL_GET_FREE", Marshal.GetLastPInvokeError());
                    }
                    var path = $"/dev/loop{number}";
                    var loop = open(path, ORdWr | OCloExec);
                    if (loop < 0)
                    {
                        throw Failed($"open {path}", Marshal.GetLastPInvokeError());
                    }
                    try
                    {
                        var config = new LoopConfig { Fd = (uint)backing, BlockSize = 4096 };
                        config.Info.Flags = readOnly ? LoFlagsReadOnly : 0;
                        var name = System.Text.Encoding.UTF8.GetBytes(file);
                        unsafe
                        {
                            // As losetup does: the name (truncated) is only informational; sysfs backing_file is the real path.
                            var length = Math.Min(name.Length, LoopInfo64.NameSize - 1);
                            name.AsSpan(0, length).CopyTo(new Span<byte>(config.Info.FileName, LoopInfo64.NameSize));
                            if (ioctl(loop, LoopConfigure, &config) == 0)
                            {
                                return path;
                            }
                        }
                        var errno = Marshal.GetLastPInvokeError();
                        if (errno is Einval or Enotty && attempt == 0)
                        {
                            // A kernel before 5.8: no LOOP_CONFIGURE.
                            return null;
                        }
                        if (errno != Ebusy)
                        {
                            throw Failed($"LOOP_CONFIGURE {path}", errno);
                        }
                    }
                    finally
                    {
                        close(loop);
                    }
                }
                throw Failed("LOOP_CONFIGURE", Ebusy);
            }
            finally
            {
                close(control);
            }
        }
        finally
        {
            // The loop device holds its own reference to the file.
            close(backing);
        }
    }

    /// <summary>mount(2) of ext4 on <paramref name="device"/> at <paramref name="mountPoint"/>, nosuid,nodev (and ro).</summary>
    public static void MountExt4(string device, string mountPoint, bool readOnly)
    {
        if (mount(device, mountPoint, "ext4", MsNoSuid | MsNoDev | (readOnly ? MsRdOnly : 0), null) != 0)
        {
            throw Failed($"mount -t ext4 {device} {mountPoint}", Marshal.GetLastPInvokeError());
        }
    }

    private static StateFilesystemException Failed(string what, int errno) =>
        new(StateFilesystemError.ToolFailed, $"{what} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).");

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct LoopInfo64
    {
        public const int NameSize = 64;
        public ulong Device;
        public ulong Inode;
        public ulong RDevice;
        public ulong Offset;
        public ulong SizeLimit;
        public uint Number;
        public uint EncryptType;
        public uint EncryptKeySize;
        public uint Flags;
        public fixed byte FileName[NameSize];
        public fixed byte CryptName[NameSize];
        public fixed byte EncryptKey[32];
        public fixed ulong Init[2];
    }

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct LoopConfig
    {
        public uint Fd;
        public uint BlockSize;
        public LoopInfo64 Info;
        public fixed ulong Reserved[8];
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(int fd, ulong request, nint argument);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int ioctl(int fd, ulong request, LoopConfig* argument);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int mount(string source, string target, string fileSystemType, ulong flags, string? data);
}
