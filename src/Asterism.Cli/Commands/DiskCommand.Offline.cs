using System.CommandLine;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Asterism.Disk;
using Asterism.StateFs;

namespace Asterism.Cli.Commands;

/// <summary>
/// The offline disaster tools on a node's state filesystem (ext4 inside the LUKS2 payload): decrypt the payload to a
/// raw image, mount it read-only until interrupted, copy its files out. All read-only (the image is opened
/// O_RDONLY, the FUSE block file refuses writes with EROFS, ext4 is mounted <c>ro</c>) and without root (fuse2fs and
/// fusermount3 as the calling user, never allow_other).
/// </summary>
public static partial class DiskCommand
{
    /// <summary>Payloads at least this large report progress on stderr while they are decrypted.</summary>
    private const long ProgressThreshold = 256L << 20;

    private const int ChunkBytes = 1 << 20;

    private const UnixFileMode OwnerOnlyDirectory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    private const UnixFileMode OwnerOnlyFile = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private static Command Decrypt()
    {
        var image = ImageArgument();
        var masterSecret = new Option<string>("--master-secret") { Description = "Master secret file", Required = true };
        var output = new Option<string>("--out") { Description = "File to write the plaintext payload (an ext4 image) to; must not exist", Required = true };
        var keyslot = KeyslotOption();
        var generation = GenerationOption();
        var command = new Command("decrypt", "Write an image's decrypted payload (the ext4 filesystem image) to a new 0600 file, offline and read-only") { image, masterSecret, output, keyslot, generation };
        command.SetAction((result, cancellationToken) => GuardedAsync(() =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var stderr = result.InvocationConfiguration.Error;
            var path = result.GetValue(image)!;
            var rawPath = result.GetValue(output)!;
            var slot = CheckKeyslotRange(result.GetValue(keyslot));
            if (File.Exists(rawPath) || Directory.Exists(rawPath) || IsSymbolicLink(rawPath))
            {
                throw new CliError($"{rawPath} exists; refusing to overwrite it");
            }
            using var device = UnlockReadOnly(path, result.GetValue(masterSecret)!, slot, CheckGeneration(result.GetValue(generation)));
            var ext4 = HasExt4(device);
            FileStream raw;
            try
            {
                // CreateNew: O_EXCL, so a file (or symlink) appearing since the check above is refused, never
                // followed or truncated; 0600 from the start, the plaintext is as secret as the key.
                raw = new FileStream(rawPath, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = OwnerOnlyFile });
            }
            catch (IOException) when (File.Exists(rawPath) || Directory.Exists(rawPath) || IsSymbolicLink(rawPath))
            {
                throw new CliError($"{rawPath} exists; refusing to overwrite it");
            }
            var complete = false;
            try
            {
                using (raw)
                {
                    CopyPayload(device, raw, stderr, cancellationToken);
                }
                complete = true;
            }
            finally
            {
                if (!complete)
                {
                    // Half a filesystem image is worse than none: it looks usable.
                    File.Delete(rawPath);
                }
            }
            stdout.WriteLine(ext4
                ? $"Decrypted {device.Length} bytes of {path} to {rawPath} (an ext4 filesystem image; mount it with 'fuse2fs -o ro {rawPath} DIR' or check it with 'e2fsck -fn {rawPath}')"
                : $"Decrypted {device.Length} bytes of {path} to {rawPath} (no ext4 superblock: a legacy record store or an unformatted disk)");
            return Task.FromResult(0);
        }));
        return command;
    }

    /// <summary>Copies the payload in 1 MiB chunks; all-zero chunks stay holes, so an unused disk gives a sparse file.</summary>
    private static void CopyPayload(Luks2PayloadDevice device, FileStream raw, TextWriter stderr, CancellationToken cancellationToken)
    {
        var buffer = new byte[ChunkBytes];
        var report = device.Length >= ProgressThreshold;
        var nextPercent = 10;
        try
        {
            for (long offset = 0; offset < device.Length; offset += ChunkBytes)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var chunk = buffer.AsSpan(0, (int)Math.Min(ChunkBytes, device.Length - offset));
                device.Read(offset, chunk);
                if (chunk.ContainsAnyExcept((byte)0))
                {
                    RandomAccess.Write(raw.SafeFileHandle, chunk, offset);
                }
                var percent = (int)((offset + chunk.Length) * 100 / device.Length);
                if (report && percent >= nextPercent)
                {
                    stderr.WriteLine($"decrypt: {percent}% ({(offset + chunk.Length) >> 20} of {device.Length >> 20} MiB)");
                    nextPercent = (percent / 10 * 10) + 10;
                }
            }
            raw.SetLength(device.Length);
            raw.Flush(flushToDisk: true);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(buffer);
        }
    }

    private static Command Mount()
    {
        var image = ImageArgument();
        var directory = new Argument<string>("dir") { Description = "Where to mount the filesystem (an empty directory; created when missing)" };
        var masterSecret = new Option<string>("--master-secret") { Description = "Master secret file", Required = true };
        var keyslot = KeyslotOption();
        var generation = GenerationOption();
        var command = new SignalHandlingCommand("mount", "Mount an image's state filesystem read-only at DIR as the current user (no root needed) until Ctrl-C or SIGTERM, then unmount it") { image, directory, masterSecret, keyslot, generation };
        command.SetAction((result, cancellationToken) => GuardedAsync(async () =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var path = result.GetValue(image)!;
            var mountPoint = Path.GetFullPath(result.GetValue(directory)!);
            var slot = CheckKeyslotRange(result.GetValue(keyslot));
            var created = !Directory.Exists(mountPoint);
            if (File.Exists(mountPoint))
            {
                throw new CliError($"{mountPoint} is a file, not a directory");
            }
            CheckOutputDirectory(mountPoint);
            // Ctrl-C and SIGTERM end the wait, not the process: the unmount below must run (see Program.RunAsync).
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
            var device = UnlockReadOnly(path, result.GetValue(masterSecret)!, slot, CheckGeneration(result.GetValue(generation)));
            if (!HasExt4(device))
            {
                device.Dispose();
                throw NoExt4(path);
            }
            await using (var mounted = await MountReadOnlyAsync(path, device, mountPoint, slot, created))
            {
                stdout.WriteLine($"Mounted the filesystem of {path} read-only at {mountPoint}. Ctrl-C or SIGTERM unmounts it.");
                stdout.Flush();
                await WaitWhileMountedAsync(mountPoint, stop.Token);
            }
            stdout.WriteLine($"Unmounted {mountPoint}.");
            return 0;

            void Stop(PosixSignalContext context)
            {
                context.Cancel = true;
                stop.Cancel();
            }
        }));
        return command;
    }

    /// <summary>Returns when <paramref name="stop"/> fires or the mount went away (fuse2fs died, someone unmounted it).</summary>
    private static async Task WaitWhileMountedAsync(string mountPoint, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        try
        {
            while (await timer.WaitForNextTickAsync(stop))
            {
                if (!MountTable.Read().Any(m => m.MountPoint == mountPoint))
                {
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Interrupted: the normal end.
        }
    }

    private static async Task<int> ExtractFilesAsync(InvocationConfiguration io, string path, Luks2PayloadDevice device, string outDir, int slot, CancellationToken cancellationToken)
    {
        var work = Directory.CreateTempSubdirectory("asterism-extract-").FullName;
        File.SetUnixFileMode(work, OwnerOnlyDirectory);
        try
        {
            var mountPoint = Path.Combine(work, "fs");
            var stats = new CopyStats();
            var root = Path.GetFullPath(outDir);
            await using (await MountReadOnlyAsync(path, device, mountPoint, slot, removeMountPoint: false))
            {
                Directory.CreateDirectory(root, OwnerOnlyDirectory);
                CopyTree(mountPoint, root, stats, io.Error, cancellationToken);
            }
            var summary = $"{stats.Files} files ({stats.Bytes} bytes), {stats.Directories} directories, {stats.Links} symbolic links";
            if (stats.Unreadable > 0)
            {
                throw new CliError($"{stats.Unreadable} entries of {path} could not be read (listed above); copied the rest to {root}: {summary}");
            }
            io.Output.WriteLine($"Extracted {summary} from {path} to {root}{(stats.Skipped > 0 ? $" (skipped {stats.Skipped} devices, sockets or FIFOs)" : "")}");
            return 0;
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    private sealed class CopyStats
    {
        public int Files { get; set; }

        public long Bytes { get; set; }

        public int Directories { get; set; }

        public int Links { get; set; }

        public int Skipped { get; set; }

        public int Unreadable { get; set; }
    }

    /// <summary>
    /// Copies the tree below <paramref name="from"/> into the existing directory <paramref name="to"/>: regular files
    /// (created 0600 with O_EXCL, then given their mode), directories (0700 while filled, then their mode),
    /// symbolic links as links (never followed). Ownership is not copied (no root needed); setuid, setgid and sticky
    /// bits are dropped, so extracting as root never plants a setuid binary on the host. Entries the caller cannot
    /// read are reported on stderr and counted.
    /// </summary>
    private static void CopyTree(string from, string to, CopyStats stats, TextWriter stderr, CancellationToken cancellationToken)
    {
        IEnumerable<FileSystemInfo> entries;
        try
        {
            entries = new DirectoryInfo(from).EnumerateFileSystemInfos().OrderBy(e => e.Name, StringComparer.Ordinal).ToList();
        }
        catch (UnauthorizedAccessException)
        {
            stderr.WriteLine($"warning: cannot read directory {from}: permission denied");
            stats.Unreadable++;
            return;
        }
        foreach (var entry in entries)
        {
            cancellationToken.ThrowIfCancellationRequested();
            // Names come from a directory listing: never empty, never "/" inside, never "." or "..".
            var target = Path.Combine(to, entry.Name);
            var mode = (UnixFileMode)((int)entry.UnixFileMode & 0x1FF);
            if (entry.LinkTarget is { } link)
            {
                File.CreateSymbolicLink(target, link);
                stats.Links++;
            }
            else if (entry is DirectoryInfo)
            {
                Directory.CreateDirectory(target, OwnerOnlyDirectory);
                CopyTree(entry.FullName, target, stats, stderr, cancellationToken);
                File.SetUnixFileMode(target, mode);
                stats.Directories++;
            }
            else if (IsRegularFile(entry.FullName))
            {
                try
                {
                    using var source = new FileStream(entry.FullName, FileMode.Open, FileAccess.Read, FileShare.Read);
                    using var copy = new FileStream(target, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = OwnerOnlyFile });
                    source.CopyTo(copy);
                    stats.Bytes += copy.Length;
                }
                catch (UnauthorizedAccessException)
                {
                    stderr.WriteLine($"warning: cannot read {entry.FullName}: permission denied");
                    stats.Unreadable++;
                    continue;
                }
                File.SetUnixFileMode(target, mode);
                File.SetLastWriteTimeUtc(target, entry.LastWriteTimeUtc);
                stats.Files++;
            }
            else
            {
                stats.Skipped++;
            }
        }
    }

    /// <summary>
    /// lstat's S_IFMT is S_IFREG. .NET reports no file type beyond directory and link, and opening a FIFO to copy it
    /// would block forever, so the type comes from lstat itself.
    /// </summary>
    private static bool IsRegularFile(string path)
    {
        // st_mode's offset in struct stat: 24 on x86-64, 16 on arm64 (the generic layout).
        var modeOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 24 : 16;
        var stat = new byte[256];
        if (lstat(path, stat) != 0)
        {
            return false;
        }
        return (BitConverter.ToUInt32(stat, modeOffset) & 0xF000) == 0x8000;
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int lstat(string path, byte[] buffer);

    /// <summary>
    /// Mounts the payload read-only at <paramref name="mountPoint"/> through FUSE + fuse2fs with a private runtime
    /// directory; the result unmounts everything (and runs <see cref="StateMountCleanup"/> for what a failure left).
    /// Takes ownership of <paramref name="device"/>.
    /// </summary>
    private static async Task<IAsyncDisposable> MountReadOnlyAsync(string path, Luks2PayloadDevice device, string mountPoint, int slot, bool removeMountPoint)
    {
        string runtime;
        try
        {
            runtime = Directory.CreateTempSubdirectory("asterism-disk-run-").FullName;
            File.SetUnixFileMode(runtime, OwnerOnlyDirectory);
        }
        catch
        {
            device.Dispose();
            throw;
        }
        var request = new StateMountRequest { ImagePath = path, RuntimeDirectory = runtime, MountPoint = mountPoint, ReadOnly = true, Keyslot = slot };
        try
        {
            // fuse2fs in both cases: the same path as root and as a user, and no loop device to leak.
            var mount = await new FuseExt4StateFilesystem(Ext4Driver.Fuse2fs).MountAsync(request, device, CancellationToken.None);
            return new OfflineMount(mount, runtime, removeMountPoint);
        }
        catch (StateFilesystemException ex)
        {
            await new OfflineMount(null, runtime, removeMountPoint).DisposeAsync();
            throw new CliError($"{path}: cannot mount the filesystem read-only: {ex.Message}");
        }
        catch
        {
            await new OfflineMount(null, runtime, removeMountPoint).DisposeAsync();
            throw;
        }
    }

    private sealed class OfflineMount(IStateMount? mount, string runtime, bool removeMountPoint) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            var mountPoint = mount?.MountPoint;
            try
            {
                if (mount is not null)
                {
                    await mount.DisposeAsync();
                }
            }
            finally
            {
                // Whatever the normal unmount missed (fuse2fs killed, a busy mount): lazily detached, never left.
                if (mountPoint is not null)
                {
                    await StateMountCleanup.CleanAsync(runtime, mountPoint, CancellationToken.None);
                }
                await StateMountCleanup.CleanAsync(runtime, Path.Combine(runtime, "none"), CancellationToken.None);
                Directory.Delete(runtime, recursive: true);
                if (removeMountPoint && mountPoint is not null && Directory.Exists(mountPoint) && !Directory.EnumerateFileSystemEntries(mountPoint).Any())
                {
                    Directory.Delete(mountPoint);
                }
            }
        }
    }

    /// <summary>
    /// Opens the image O_RDONLY, validates its header, derives the disk key from the master secret and the image's
    /// UUID and unlocks <paramref name="keyslot"/>: a read-only payload device, or one "Error:" line.
    /// </summary>
    private static Luks2PayloadDevice UnlockReadOnly(string path, string masterSecretFile, int keyslot, int generation)
    {
        FileBlockDevice file;
        try
        {
            file = FileBlockDevice.Open(path, writable: false);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CliError(Unreadable("image", path, ex));
        }
        try
        {
            Luks2Image luks;
            try
            {
                luks = Luks2Image.Open(file, ownsDevice: false);
            }
            catch (Luks2HeaderException ex)
            {
                throw new CliError($"{path}: not a usable LUKS2 state disk: {ex.Message}");
            }
            using (luks)
            {
                CheckKeyslotExists(path, luks.Header, keyslot);
                var key = KeyFor(luks.Header, null, masterSecretFile, generation);
                try
                {
                    if (luks.Unlock(key, out var volumeKey, keyslot) != KeyCheckResult.Accepted)
                    {
                        throw MasterSecretRejected(keyslot, generation);
                    }
                    using (volumeKey)
                    {
                        return new Luks2PayloadDevice(file, luks.Header.Metadata.SegmentOffset, volumeKey!, ownsImage: true, readOnly: true);
                    }
                }
                finally
                {
                    CryptographicOperations.ZeroMemory(key);
                }
            }
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static bool HasExt4(Luks2PayloadDevice device) => Ext4.HasSuperblock(device);

    private static CliError NoExt4(string path) =>
        new($"{path}: no ext4 filesystem in the payload (a legacy record store or an unformatted disk); 'disk extract' reads a record store, 'disk decrypt' writes the raw payload");

    private static void CheckOutputDirectory(string path)
    {
        if (File.Exists(path) || (IsSymbolicLink(path) && !Directory.Exists(path)))
        {
            throw new CliError($"{path} exists and is not a directory; refusing to write into it");
        }
        if (Directory.Exists(path) && Directory.EnumerateFileSystemEntries(path).Any())
        {
            throw new CliError($"{path} is not empty; refusing to write into it");
        }
    }

    private static bool IsSymbolicLink(string path) => new FileInfo(path).LinkTarget is not null;

    private static async Task<int> GuardedAsync(Func<Task<int>> action)
    {
        try
        {
            return await action();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CliError($"I/O error: {ex.Message}");
        }
        catch (StateFilesystemException ex)
        {
            throw new CliError(ex.Message);
        }
    }
}

/// <summary>A command that handles SIGINT/SIGTERM itself (it must clean up, however long that takes).</summary>
internal sealed class SignalHandlingCommand(string name, string description) : Command(name, description);
