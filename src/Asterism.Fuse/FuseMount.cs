using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;

namespace Asterism.Fuse;

/// <summary>How a FUSE file system gets mounted.</summary>
public enum FuseMountMethod
{
    /// <summary>mount(2) when the process is root, fusermount3 otherwise.</summary>
    Auto,

    /// <summary>mount(2) with fd=,rootmode=,user_id=,group_id= (needs CAP_SYS_ADMIN).</summary>
    Kernel,

    /// <summary>The setuid helper fusermount3, which hands the /dev/fuse descriptor back over a socket.</summary>
    Fusermount,
}

/// <summary>
/// A mounted FUSE file system and the session serving it. Never uses <c>allow_other</c>: only the mounting user
/// (uid and gid of this process) can use the mount; <c>default_permissions</c> makes the kernel check modes too.
/// Dispose unmounts (lazily when busy), stops the workers and closes the connection.
/// </summary>
public sealed class FuseMount : IDisposable
{
    /// <summary>The file-system type shown in /proc/self/mountinfo (fuse.asterism).</summary>
    public const string Subtype = "asterism";

    private const string FusermountProgram = "fusermount3";
    private bool _disposed;

    private FuseMount(string mountPoint, FuseMountMethod method, FuseSession session)
    {
        MountPoint = mountPoint;
        Method = method;
        Session = session;
    }

    /// <summary>Absolute path of the mount point.</summary>
    public string MountPoint { get; }

    /// <summary>How it was mounted (decides how it is unmounted).</summary>
    public FuseMountMethod Method { get; }

    /// <summary>The serving session.</summary>
    public FuseSession Session { get; }

    /// <summary>
    /// Mounts <paramref name="fileSystem"/> at <paramref name="mountPoint"/> (an existing directory) and starts serving.
    /// Returns once the kernel's INIT has been answered, so the mount is usable.
    /// </summary>
    public static FuseMount Mount(string mountPoint, IFuseFileSystem fileSystem, FuseSessionOptions? options = null, FuseMountMethod method = FuseMountMethod.Auto)
    {
        ArgumentNullException.ThrowIfNull(mountPoint);
        ArgumentNullException.ThrowIfNull(fileSystem);
        var path = Path.GetFullPath(mountPoint);
        if (!Directory.Exists(path))
        {
            throw new DirectoryNotFoundException($"Mount point {path} does not exist.");
        }
        if (method == FuseMountMethod.Auto)
        {
            method = Native.geteuid() == 0 ? FuseMountMethod.Kernel : FuseMountMethod.Fusermount;
        }
        var fd = method == FuseMountMethod.Kernel ? MountWithKernel(path) : MountWithFusermount(path);
        FuseSession session;
        try
        {
            session = new FuseSession(fd, fileSystem, options);
        }
        catch
        {
            Native.close(fd);
            Unmount(path, method, lazy: true);
            throw;
        }
        var mount = new FuseMount(path, method, session);
        session.Start();
        // The kernel sends INIT right after mount; the first stat makes sure it was answered before callers use the
        // mount (stat blocks until then) and fails if the session died on it.
        try
        {
            _ = File.GetAttributes(path);
            if (!session.IsInitialized)
            {
                throw new IOException($"The FUSE session at {path} did not initialize: {session.Fault ?? "unknown"}");
            }
        }
        catch
        {
            mount.Dispose();
            throw;
        }
        return mount;
    }

    /// <summary>Options string mount(2) gets (exposed for tests and the README): no allow_other.</summary>
    public static string KernelMountData(int fd, uint uid, uint gid) => string.Create(CultureInfo.InvariantCulture,
        $"fd={fd},rootmode=40000,user_id={uid},group_id={gid},default_permissions");

    /// <summary>
    /// Unmounts <paramref name="mountPoint"/>: umount2 as root, <c>fusermount3 -u</c> otherwise; <paramref name="lazy"/>
    /// detaches even when busy or when the server is gone (MNT_DETACH, <c>-z</c>). False when it was not mounted.
    /// </summary>
    public static bool Unmount(string mountPoint, FuseMountMethod method, bool lazy)
    {
        if (method == FuseMountMethod.Auto)
        {
            method = Native.geteuid() == 0 ? FuseMountMethod.Kernel : FuseMountMethod.Fusermount;
        }
        if (method == FuseMountMethod.Kernel)
        {
            if (Native.umount2(mountPoint, lazy ? Native.MNT_DETACH : 0) == 0)
            {
                return true;
            }
            var errno = Native.LastErrno;
            if (errno is Native.EINVAL or Native.ENOENT)
            {
                return false;
            }
            throw new IOException($"umount {mountPoint} failed: {Native.Describe(errno)}");
        }
        var args = lazy ? new[] { "-u", "-z", "-q", "--", mountPoint } : new[] { "-u", "-q", "--", mountPoint };
        var (exit, stderr) = Run(FusermountProgram, args);
        if (exit != 0 && (stderr.Contains("not mounted", StringComparison.Ordinal) || stderr.Contains("not found in", StringComparison.Ordinal)))
        {
            return false;
        }
        return exit == 0 ? true : throw new IOException($"fusermount3 -u {mountPoint} failed: {stderr.Trim()}");
    }

    /// <summary>Unmounts (lazily if busy), stops the session and closes the connection.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        try
        {
            try
            {
                Unmount(MountPoint, Method, lazy: false);
            }
            catch (IOException)
            {
                // Busy (a loop device or a stacked mount still uses it): detach now, the kernel finishes when released.
                Unmount(MountPoint, Method, lazy: true);
            }
        }
        finally
        {
            Session.Dispose();
        }
    }

    private static int MountWithKernel(string path)
    {
        var fd = Native.open("/dev/fuse", Native.O_RDWR | Native.O_CLOEXEC);
        if (fd < 0)
        {
            throw new IOException($"Cannot open /dev/fuse: {Native.Describe(Native.LastErrno)}");
        }
        var data = KernelMountData(fd, Native.geteuid(), Native.getegid());
        if (Native.mount(Subtype, path, "fuse." + Subtype, Native.MS_NOSUID | Native.MS_NODEV, data) != 0)
        {
            var errno = Native.LastErrno;
            Native.close(fd);
            throw new IOException($"mount of FUSE at {path} failed: {Native.Describe(errno)}");
        }
        return fd;
    }

    private static readonly Lock SpawnGate = new();

    private static unsafe int MountWithFusermount(string path)
    {
        var pair = stackalloc int[2];
        if (Native.socketpair(Native.AF_UNIX, Native.SOCK_STREAM | Native.SOCK_CLOEXEC, 0, pair) != 0)
        {
            throw new IOException($"socketpair failed: {Native.Describe(Native.LastErrno)}");
        }
        int ours = pair[0], theirs = pair[1];
        try
        {
            var psi = new ProcessStartInfo(FusermountProgram)
            {
                UseShellExecute = false,
                RedirectStandardError = true,
                RedirectStandardOutput = true,
                RedirectStandardInput = true,
            };
            foreach (var a in new[] { "-o", $"nosuid,nodev,default_permissions,fsname={Subtype},subtype={Subtype}", "--", path })
            {
                psi.ArgumentList.Add(a);
            }
            psi.Environment["_FUSE_COMMFD"] = theirs.ToString(CultureInfo.InvariantCulture);
            Process process;
            // The helper must inherit its end of the socket: clear close-on-exec only while it is being spawned, and
            // serialise spawns so no other child of ours inherits it meanwhile.
            lock (SpawnGate)
            {
                Native.fcntl(theirs, Native.F_SETFD, 0);
                try
                {
                    process = Process.Start(psi) ?? throw new IOException("fusermount3 did not start");
                }
                catch (Win32Exception e)
                {
                    throw new IOException($"Cannot run {FusermountProgram} (Debian package fuse3): {e.Message}", e);
                }
                finally
                {
                    Native.close(theirs);
                    theirs = -1;
                }
            }
            using (process)
            {
                process.StandardInput.Close();
                var stderr = process.StandardError.ReadToEndAsync();
                _ = process.StandardOutput.ReadToEndAsync();
                var fd = ReceiveFd(ours);
                process.WaitForExit();
                if (fd < 0 || process.ExitCode != 0)
                {
                    if (fd >= 0)
                    {
                        Native.close(fd);
                    }
                    throw new IOException($"{FusermountProgram} could not mount {path} (exit {process.ExitCode}): {stderr.Result.Trim()}");
                }
                return fd;
            }
        }
        finally
        {
            Native.close(ours);
            if (theirs >= 0)
            {
                Native.close(theirs);
            }
        }
    }

    /// <summary>Receives one descriptor (SCM_RIGHTS) from fusermount3; -1 when the helper closed without sending one.</summary>
    private static unsafe int ReceiveFd(int socket)
    {
        byte data = 0;
        var iov = new Native.IoVec { Base = &data, Length = 1 };
        const int controlSize = 64;
        var control = stackalloc byte[controlSize];
        new Span<byte>(control, controlSize).Clear();
        var message = new Native.MsgHdr { Iov = &iov, IovLength = 1, Control = control, ControlLength = controlSize };
        nint n;
        do
        {
            n = Native.recvmsg(socket, &message, Native.MSG_CMSG_CLOEXEC);
        }
        while (n < 0 && Native.LastErrno == Native.EINTR);
        if (n <= 0 || message.ControlLength < (nuint)sizeof(Native.CmsgHdr) + sizeof(int))
        {
            return -1;
        }
        var header = (Native.CmsgHdr*)control;
        if (header->Level != Native.SOL_SOCKET || header->Type != Native.SCM_RIGHTS || header->Length < (nuint)(sizeof(Native.CmsgHdr) + sizeof(int)))
        {
            return -1;
        }
        return *(int*)(control + sizeof(Native.CmsgHdr));
    }

    internal static (int ExitCode, string Stderr) Run(string program, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true, RedirectStandardInput = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        try
        {
            using var p = Process.Start(psi) ?? throw new IOException($"{program} did not start");
            p.StandardInput.Close();
            var stderr = p.StandardError.ReadToEndAsync();
            _ = p.StandardOutput.ReadToEndAsync();
            p.WaitForExit();
            return (p.ExitCode, stderr.Result);
        }
        catch (Win32Exception e)
        {
            throw new IOException($"Cannot run {program}: {e.Message}", e);
        }
    }
}
