using System.Diagnostics;
using Asterism.Fuse;

namespace Asterism.StateFs;

/// <summary>How ext4 on the FUSE block file is mounted.</summary>
public enum Ext4Driver
{
    /// <summary><c>losetup -f --show -b 4096</c> + kernel ext4 (root).</summary>
    LoopDevice,

    /// <summary>fuse2fs, ext4 in user space (no root needed).</summary>
    Fuse2fs,
}

/// <summary>
/// The LUKS2 payload served by <see cref="BlockDeviceFileSystem"/> over our FUSE server at
/// <c>RUNTIME/block/disk</c> (mounted without allow_other, so only this user reaches it), ext4 on top.
/// </summary>
public sealed class FuseExt4StateFilesystem(Ext4Driver driver, FuseSessionOptions? fuseOptions = null) : IStateFilesystem
{
    private static readonly TimeSpan Fuse2fsReadyTimeout = TimeSpan.FromSeconds(60);

    /// <summary>The ext4 driver in use.</summary>
    public Ext4Driver Driver => driver;

    /// <inheritdoc />
    public string Name => driver == Ext4Driver.LoopDevice ? "fuse+loop" : "fuse+fuse2fs";

    /// <summary>The FUSE block file for a request.</summary>
    public static string BlockFile(StateMountRequest request) => Path.Combine(BlockDirectory(request), "disk");

    /// <inheritdoc />
    public IReadOnlyList<string> DescribeCommands(StateMountRequest request)
    {
        var file = BlockFile(request);
        var list = new List<string> { $"(in process) FUSE mount of the decrypted payload at {file}" };
        if (request.FormatIfNoFilesystem && !request.ReadOnly)
        {
            list.Add("mkfs.ext4 " + string.Join(' ', Ext4.MkfsArguments(file)) + "   (only when no ext4 superblock)");
        }
        if (driver == Ext4Driver.LoopDevice)
        {
            // Made as system calls by LoopAttach (losetup only on a kernel without LOOP_CONFIGURE); these are the equivalents.
            list.Add("losetup " + string.Join(' ', LosetupArguments(file, request.ReadOnly)) + "   (as LOOP_CTL_GET_FREE + LOOP_CONFIGURE)");
            list.Add($"mount -t ext4 -o {MountOptions(request.ReadOnly)} LOOP {request.MountPoint}   (as mount(2))");
        }
        else
        {
            list.Add(string.Join(' ', Fuse2fsArguments(file, request.MountPoint, request.ReadOnly).Prepend("fuse2fs")));
        }
        return list;
    }

    /// <inheritdoc />
    public async Task<IStateMount> MountAsync(StateMountRequest request, ReadOnlyMemory<byte> passphrase, CancellationToken cancellationToken)
    {
        CheckRequest(request);
        var device = (request.ReadOnly
                ? Luks2PayloadDevice.OpenReadOnly(request.ImagePath, passphrase.Span, request.Keyslot)
                : Luks2PayloadDevice.Open(request.ImagePath, passphrase.Span, request.Keyslot))
            ?? throw new StateFilesystemException(StateFilesystemError.WrongKey, $"The key does not open keyslot {request.Keyslot} of {request.ImagePath}.");
        return await MountAsync(request, device, cancellationToken);
    }

    /// <summary>
    /// Mounts an already unlocked payload (the CLI unlocks once to check the key and probe for ext4 first); takes
    /// ownership of <paramref name="device"/>, which is disposed with the mount or when mounting fails.
    /// <see cref="StateMountRequest.ImagePath"/> and <see cref="StateMountRequest.Keyslot"/> only name it in messages.
    /// </summary>
    public async Task<IStateMount> MountAsync(StateMountRequest request, Luks2PayloadDevice device, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(device);
        string blockDir;
        try
        {
            CheckRequest(request);
            PrivateDirectory(request.RuntimeDirectory);
            blockDir = PrivateDirectory(BlockDirectory(request));
            Directory.CreateDirectory(request.MountPoint);
        }
        catch
        {
            device.Dispose();
            throw;
        }
        var readOnly = request.ReadOnly || device.IsReadOnly;
        var mount = new Mount(request.MountPoint, device);
        try
        {
            mount.Fuse = FuseMount.Mount(blockDir, new BlockDeviceFileSystem(device, "disk", readOnly: readOnly), fuseOptions);
            var file = BlockFile(request);
            mount.BlockPath = file;
            if (!Ext4.HasSuperblock(file))
            {
                if (!request.FormatIfNoFilesystem || readOnly)
                {
                    throw new StateFilesystemException(StateFilesystemError.NoFilesystem, $"No ext4 filesystem in {request.ImagePath} and formatting was not asked for.");
                }
                await CommandRunner.CheckedAsync("mkfs.ext4", Ext4.MkfsArguments(file), cancellationToken);
            }
            if (driver == Ext4Driver.LoopDevice)
            {
                // The system calls losetup and mount would make, from this process (LoopAttach says why); losetup only
                // on a kernel without LOOP_CONFIGURE.
                mount.Loop = LoopAttach.TryAttach(file, readOnly)
                    ?? (await CommandRunner.CheckedAsync("losetup", LosetupArguments(file, readOnly), cancellationToken)).Trim();
                mount.BlockPath = mount.Loop;
                cancellationToken.ThrowIfCancellationRequested();
                LoopAttach.MountExt4(mount.Loop, Path.GetFullPath(request.MountPoint), readOnly);
            }
            else
            {
                mount.Fuse2fs = await StartFuse2fsAsync(file, request.MountPoint, readOnly, cancellationToken);
            }
            mount.Mounted = true;
            if (!readOnly)
            {
                // The filesystem root is the node's own: nobody else may list or enter it. (A read-only mount keeps
                // the root's mode: chmod would be refused, and the node made it 0700 when it was mounted writable.)
                File.SetUnixFileMode(request.MountPoint, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }
            return mount;
        }
        catch
        {
            await mount.DisposeAsync();
            throw;
        }
    }

    private void CheckRequest(StateMountRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.ReadOnly && request.FormatIfNoFilesystem)
        {
            throw new ArgumentException("A read-only mount cannot format the volume.", nameof(request));
        }
        if (driver == Ext4Driver.LoopDevice && !Environment.IsPrivilegedProcess)
        {
            throw new StateFilesystemException(StateFilesystemError.Unsupported, "A loop device needs root; use fuse2fs as a user.");
        }
    }

    private static string MountOptions(bool readOnly) => readOnly ? "ro,nosuid,nodev" : "nosuid,nodev";

    private static string[] LosetupArguments(string file, bool readOnly) =>
        readOnly ? ["-f", "--show", "-r", "-b", "4096", file] : ["-f", "--show", "-b", "4096", file];

    private static string BlockDirectory(StateMountRequest request) => Path.Combine(Path.GetFullPath(request.RuntimeDirectory), "block");

    internal static string PrivateDirectory(string path)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(full, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.SetUnixFileMode(full, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return full;
    }

    /// <summary>
    /// fuse2fs's arguments. Read-write mounts add libfuse's <c>hard_remove</c>: an unlinked file is removed at once
    /// instead of being hidden as <c>.fuse_hidden…</c> until the kernel's asynchronous release of it arrives. etcd's
    /// writability probe (write wal.tmp/.touch, close, unlink) otherwise raced that release under load and left the
    /// hidden file, and etcd refused the non-empty wal.tmp on every retry (a non-root control plane that never
    /// started; seen in CI). Nothing of ours uses a file after unlinking it.
    /// </summary>
    private static IEnumerable<string> Fuse2fsArguments(string file, string mountPoint, bool readOnly) =>
        [file, Path.GetFullPath(mountPoint), "-f", "-o", readOnly ? MountOptions(readOnly) : MountOptions(readOnly) + ",hard_remove"];

    private static async Task<Process> StartFuse2fsAsync(string file, string mountPoint, bool readOnly, CancellationToken cancellationToken)
    {
        var psi = new ProcessStartInfo("fuse2fs") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true, RedirectStandardInput = true };
        foreach (var a in Fuse2fsArguments(file, mountPoint, readOnly))
        {
            psi.ArgumentList.Add(a);
        }
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new StateFilesystemException(StateFilesystemError.ToolMissing, "fuse2fs did not start.");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new StateFilesystemException(StateFilesystemError.ToolMissing, $"Cannot run fuse2fs (Debian package fuse2fs): {e.Message}.");
        }
        process.StandardInput.Close();
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
        _ = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var target = Path.GetFullPath(mountPoint).TrimEnd('/');
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Fuse2fsReadyTimeout);
        try
        {
            // fuse2fs -f reports no readiness: the mount appearing in the table is the signal, its exit the failure.
            while (!MountTable.Read().Any(m => m.MountPoint == target && m.FileSystemType.StartsWith("fuse", StringComparison.Ordinal)))
            {
                if (process.HasExited)
                {
                    throw new StateFilesystemException(StateFilesystemError.ToolFailed, $"fuse2fs exited with {process.ExitCode}: {(await stderr).Trim()}");
                }
                await Task.Delay(TimeSpan.FromMilliseconds(20), timeout.Token);
            }
            return process;
        }
        catch
        {
            if (!process.HasExited)
            {
                process.Kill();
            }
            process.Dispose();
            throw;
        }
    }

    private sealed class Mount(string mountPoint, Luks2PayloadDevice device) : IStateMount
    {
        private int _disposed;

        public string MountPoint { get; } = Path.GetFullPath(mountPoint);

        public string BlockPath { get; set; } = string.Empty;

        public FuseMount? Fuse { get; set; }

        public string? Loop { get; set; }

        public Process? Fuse2fs { get; set; }

        public bool Mounted { get; set; }

        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }
            try
            {
                if (Fuse2fs is not null)
                {
                    // fuse2fs flushes and exits when its mount goes away.
                    FuseMount.Unmount(MountPoint, FuseMountMethod.Fusermount, lazy: false);
                    await Fuse2fs.WaitForExitAsync();
                    Fuse2fs.Dispose();
                }
                else if (Loop is not null)
                {
                    if (Mounted)
                    {
                        await CommandRunner.CheckedAsync("umount", [MountPoint], CancellationToken.None);
                    }
                    await CommandRunner.CheckedAsync("losetup", ["-d", Loop], CancellationToken.None);
                }
            }
            finally
            {
                Fuse?.Dispose();
                device.Dispose();
            }
        }
    }
}
