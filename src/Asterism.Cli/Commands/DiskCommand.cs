using System.CommandLine;
using System.Security.Cryptography;
using Asterism.Config;
using Asterism.Crypto;
using Asterism.Disk;

namespace Asterism.Cli.Commands;

/// <summary>
/// <c>asterism disk …</c>: offline tools for state-disk images — format, inspect (no secrets), test a key, and the
/// disaster-recovery path when a node will not come back: extract the state filesystem's files, mount it read-only,
/// or decrypt its payload to a raw ext4 image (DiskCommand.Offline.cs).
/// </summary>
public static partial class DiskCommand
{
    private const int MaxKeyFileBytes = Luks2Image.MaxPassphraseLength;

    public static Command Create(GlobalOptions global)
    {
        _ = global;
        var command = new Command("disk", "Offline tools for state-disk images");
        command.Subcommands.Add(Format());
        command.Subcommands.Add(Inspect());
        command.Subcommands.Add(TestKey());
        command.Subcommands.Add(Extract());
        command.Subcommands.Add(Decrypt());
        command.Subcommands.Add(Mount());
        return command;
    }

    private static Argument<string> ImageArgument() => new("image") { Description = "State-disk image file" };

    private static Command Format()
    {
        var image = ImageArgument();
        var size = new Option<string>("--size") { Description = "Image size, e.g. 64MiB (at least 17MiB: the payload starts at 16 MiB)", Required = true };
        var keyFile = new Option<string>("--key-file") { Description = "File whose bytes are the passphrase of keyslot 0", Required = true };
        var command = new Command("format", "Format an image as a LUKS2 state disk (aes-xts-plain64, 4096-byte sectors)") { image, size, keyFile };
        command.SetAction(result => Guarded(() =>
        {
            var path = result.GetValue(image)!;
            long bytes;
            try
            {
                bytes = Durations.ParseSize(result.GetValue(size)!, "--size");
            }
            catch (ArgumentException ex)
            {
                throw new CliError(ex.Message, 2);
            }
            if (bytes < Luks2Image.PayloadOffset + (1 << 20))
            {
                throw new CliError("--size must be at least 17MiB (the payload starts at 16 MiB)", 2);
            }
            if (File.Exists(path) && new FileInfo(path).Length > 0)
            {
                throw new CliError($"{path} exists and is not empty; refusing to overwrite it");
            }
            var key = ReadKeyFile(result.GetValue(keyFile)!);
            try
            {
                using var disk = StateDisk.Format(path, bytes, key);
                result.InvocationConfiguration.Output.WriteLine($"Formatted {path}: LUKS2, uuid {disk.Uuid}, {bytes} bytes");
            }
            finally
            {
                CryptographicOperations.ZeroMemory(key);
            }
            return 0;
        }));
        return command;
    }

    private static Command Inspect()
    {
        var image = ImageArgument();
        var command = new Command("inspect", "Show an image's LUKS2 header: uuid, cipher, sector size, keyslots and KDFs with their cost, token (no secrets)") { image };
        command.SetAction(result => Guarded(() =>
        {
            var stdout = result.InvocationConfiguration.Output;
            using var luks = OpenImage(result.GetValue(image)!, writable: false);
            var header = luks.Header;
            stdout.WriteLine($"uuid:        {header.Uuid}");
            stdout.WriteLine($"cipher:      {header.Cipher} ({Luks2Metadata.KeyBytes * 8}-bit key)");
            stdout.WriteLine($"sector size: {header.SectorSize}");
            stdout.WriteLine($"payload:     offset {header.Metadata.SegmentOffset}");
            stdout.WriteLine($"sequence id: {header.SequenceId} (primary header {(header.PrimaryValid ? "valid" : "INVALID")}, secondary {(header.SecondaryValid ? "valid" : "INVALID")})");
            stdout.WriteLine("keyslots:");
            foreach (var slot in header.Metadata.Keyslots.Values)
            {
                var kdf = slot.Kdf.IsArgon2
                    ? $"{slot.Kdf.Type} (time {slot.Kdf.Iterations}, memory {slot.Kdf.MemoryKiB} KiB, threads {slot.Kdf.Parallelism})"
                    : $"{slot.Kdf.Type} (iterations {slot.Kdf.Iterations})";
                var cost = Luks2KdfCost.OfAttempt(slot.Kdf, header.Metadata.Digest);
                stdout.WriteLine($"  {slot.Id}: luks2, {kdf}, cost {cost} units, area {slot.AreaOffset}+{slot.AreaSize}");
            }
            stdout.WriteLine($"kdf cost:    {Luks2KdfCost.OfHeader(header.Metadata)} units for every keyslot (per-header budget {Luks2KdfCost.DefaultHeaderBudget})");
            stdout.WriteLine($"digest:      pbkdf2-sha256 (iterations {header.Metadata.Digest.Iterations})");
            var token = luks.GetToken(0);
            stdout.WriteLine($"token 0:     {token ?? "(none)"}");
            return 0;
        }));
        return command;
    }

    /// <summary>The master secret's key generation: 1 until a rotation completed ('asterism secret rotate --status' names the current one).</summary>
    private static Option<int> GenerationOption() => new("--generation")
    {
        Description = "Key generation of the master secret (1 until 'asterism secret rotate --complete'; 'asterism secret rotate --status' shows the current one)",
        DefaultValueFactory = _ => 1,
    };

    private static int CheckGeneration(int generation) =>
        generation is >= 1 and <= KeyDerivation.MaxGeneration
            ? generation
            : throw new CliError($"--generation must be 1 to {KeyDerivation.MaxGeneration}", 2);

    /// <summary>The refusal of a master secret's key, with the hint a rotated cluster needs.</summary>
    private static CliError MasterSecretRejected(int keyslot, int generation) =>
        new($"the master secret does not open keyslot {keyslot} of this disk (key rejected; derived for key generation {generation}"
            + (generation == 1 ? ", pass --generation N if the secret was rotated)" : ")"));

    private static Option<int> KeyslotOption() => new("--keyslot")
    {
        Description = "Keyslot to try (default 0, where a node's derived disk key lives); no other keyslot is tried",
        DefaultValueFactory = _ => 0,
    };

    private static Command TestKey()
    {
        var image = ImageArgument();
        var keyFile = new Option<string?>("--key-file") { Description = "File whose bytes are the passphrase" };
        var masterSecret = new Option<string?>("--master-secret") { Description = "Master secret file: derive this disk's key from the image's UUID" };
        var keyslot = KeyslotOption();
        var generation = GenerationOption();
        var command = new Command("test-key", "Check whether a key opens a keyslot of the image (exit 0) or not (exit 1)") { image, keyFile, masterSecret, keyslot, generation };
        command.SetAction(result => Guarded(() =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var path = result.GetValue(image)!;
            var slot = CheckKeyslotRange(result.GetValue(keyslot));
            CheckOneKeySource(result.GetValue(keyFile), result.GetValue(masterSecret));
            using var luks = OpenImage(path, writable: false);
            CheckKeyslotExists(path, luks.Header, slot);
            var key = KeyFor(luks.Header, result.GetValue(keyFile), result.GetValue(masterSecret), CheckGeneration(result.GetValue(generation)));
            try
            {
                var verdict = luks.CheckKey(key, slot);
                stdout.WriteLine(verdict == KeyCheckResult.Accepted
                    ? $"Key accepted: it opens keyslot {slot}."
                    : $"Key rejected: it does not open keyslot {slot}.");
                return verdict == KeyCheckResult.Accepted ? 0 : 1;
            }
            finally
            {
                CryptographicOperations.ZeroMemory(key);
            }
        }));
        return command;
    }

    private static Command Extract()
    {
        var image = ImageArgument();
        var masterSecret = new Option<string>("--master-secret") { Description = "Master secret file", Required = true };
        var output = new Option<string>("--out") { Description = "Directory to copy the files into (must not exist or be empty)", Required = true };
        var keyslot = KeyslotOption();
        var generation = GenerationOption();
        var command = new Command("extract", "Copy the files of an image's state filesystem out offline (read-only, no root needed) with the master secret; a legacy image's record store is written as files") { image, masterSecret, output, keyslot, generation };
        command.SetAction((result, cancellationToken) => GuardedAsync(async () =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var path = result.GetValue(image)!;
            var outDir = result.GetValue(output)!;
            var slot = CheckKeyslotRange(result.GetValue(keyslot));
            var keyGeneration = CheckGeneration(result.GetValue(generation));
            CheckOutputDirectory(outDir);
            // Read-only: extraction is the disaster-recovery path and must work on a read-only copy, and must not
            // be able to change the image it rescues data from.
            var device = UnlockReadOnly(path, result.GetValue(masterSecret)!, slot, keyGeneration);
            if (!HasExt4(device))
            {
                device.Dispose();
                stdout.WriteLine($"No ext4 filesystem in {path}: extracting the legacy record store.");
                return ExtractRecords(stdout, path, result.GetValue(masterSecret)!, outDir, slot, keyGeneration);
            }
            return await ExtractFilesAsync(result.InvocationConfiguration, path, device, outDir, slot, cancellationToken);
        }));
        return command;
    }

    /// <summary>The pre-filesystem layout: every record of the image's record store becomes a 0600 file.</summary>
    private static int ExtractRecords(TextWriter stdout, string path, string masterSecretFile, string outDir, int slot, int generation)
    {
        using var disk = OpenStateDisk(path);
        CheckKeyslotExists(path, disk.Header, slot);
        var key = KeyFor(disk.Header, null, masterSecretFile, generation);
        try
        {
            if (!disk.TryUnlock(key, slot))
            {
                throw MasterSecretRejected(slot, generation);
            }
            var root = Path.GetFullPath(outDir);
            const UnixFileMode ownerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
            Directory.CreateDirectory(root, ownerOnly);
            var count = 0;
            foreach (var name in disk.Store.Names)
            {
                var target = Path.GetFullPath(Path.Combine(root, name));
                if (!target.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                {
                    throw new CliError($"record name \"{name}\" escapes the output directory; refusing");
                }
                Directory.CreateDirectory(Path.GetDirectoryName(target)!, ownerOnly);
                // Records may be control-plane secrets: created 0600, never readable by others even briefly.
                var value = disk.Store.Get(name) ?? [];
                using (var file = new FileStream(target, new FileStreamOptions
                {
                    Mode = FileMode.CreateNew,
                    Access = FileAccess.Write,
                    UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
                }))
                {
                    file.Write(value);
                }
                CryptographicOperations.ZeroMemory(value);
                count++;
            }
            stdout.WriteLine($"Extracted {count} records from {path} to {root}");
            return 0;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(key);
        }
    }

    /// <summary>
    /// Runs an action so that an I/O failure nobody mapped more precisely is still one "Error: …" line and exit 1,
    /// never an unhandled exception (which aborts the process with a stack trace).
    /// </summary>
    private static int Guarded(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CliError($"I/O error: {ex.Message}");
        }
    }

    private static int CheckKeyslotRange(int keyslot) =>
        keyslot is >= 0 and < 32 ? keyslot : throw new CliError("--keyslot must be 0 to 31", 2);

    private static void CheckKeyslotExists(string path, Luks2Header header, int keyslot)
    {
        if (!header.Metadata.Keyslots.ContainsKey(keyslot))
        {
            throw new CliError($"{path}: keyslot {keyslot} does not exist (keyslots: {string.Join(", ", header.Metadata.Keyslots.Keys)})");
        }
    }

    private static void CheckOneKeySource(string? keyFile, string? masterSecretFile)
    {
        if ((keyFile is null) == (masterSecretFile is null))
        {
            throw new CliError("pass exactly one of --key-file or --master-secret", 2);
        }
    }

    private static byte[] KeyFor(Luks2Header header, string? keyFile, string? masterSecretFile, int generation)
    {
        CheckOneKeySource(keyFile, masterSecretFile);
        if (keyFile is not null)
        {
            return ReadKeyFile(keyFile);
        }
        using var master = Workspace.LoadMasterSecret(masterSecretFile!);
        using var key = KeyDerivation.DeriveDiskKey(master, header.Uuid.ToLowerInvariant(), generation);
        return key.ToArray();
    }

    private static byte[] ReadKeyFile(string path)
    {
        byte[]? key = null;
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            var length = file.Length;
            if (length is 0 or > MaxKeyFileBytes)
            {
                throw new CliError($"key file \"{path}\" must hold 1 to {MaxKeyFileBytes} bytes");
            }
            key = new byte[length];
            file.ReadExactly(key);
            return key;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            if (key is not null)
            {
                CryptographicOperations.ZeroMemory(key);
            }
            throw new CliError(Unreadable("key file", path, ex));
        }
    }

    /// <summary>One line for a file that cannot be opened or read (the exception text names the path, never contents).</summary>
    private static string Unreadable(string what, string path, Exception ex) => ex switch
    {
        FileNotFoundException or DirectoryNotFoundException => $"{what} \"{path}\" does not exist",
        _ when Directory.Exists(path) => $"{what} \"{path}\" is a directory",
        UnauthorizedAccessException => $"cannot read {what} \"{path}\": permission denied",
        _ => $"cannot read {what} \"{path}\": {ex.Message}",
    };

    private static Luks2Image OpenImage(string path, bool writable)
    {
        try
        {
            return Luks2Image.Open(path, writable);
        }
        catch (Luks2HeaderException ex)
        {
            throw new CliError($"{path}: not a usable LUKS2 state disk: {ex.Message}");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CliError(Unreadable("image", path, ex));
        }
    }

    private static StateDisk OpenStateDisk(string path)
    {
        try
        {
            return StateDisk.OpenReadOnly(path);
        }
        catch (Luks2HeaderException ex)
        {
            throw new CliError($"{path}: not a usable LUKS2 state disk: {ex.Message}");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CliError(Unreadable("image", path, ex));
        }
    }
}
