using System.Security.Cryptography;
using System.Text;
using Asterism.Crypto;
using Asterism.Secrets;

namespace Asterism.Cli;

/// <summary>
/// The master secret as share files on the operator's side: writing a split (each share JSON encrypted to its
/// holder, armored so it can be pasted), and reading shares back (files or pasted text), decrypting them with the
/// holders' identities, combining them in memory and checking the result is this cluster's secret — before anything
/// is sent anywhere. The whole secret is never written by this class.
/// </summary>
public static class ShareFiles
{
    public const string FilePrefix = "asterism-share-";

    /// <summary>Stop reading a pasted share after this many characters: a share is a few KiB.</summary>
    private const int MaxPastedChars = 64 * 1024;

    /// <summary>The file name of share <paramref name="index"/>.</summary>
    public static string FileName(int index, bool encrypted) => $"{FilePrefix}{index}{(encrypted ? ".age" : ".json")}";

    /// <summary>Refuses an output directory that is not the caller's own or already holds share files; changes nothing.</summary>
    public static void CheckOutput(ShareRequest request)
    {
        PrivateOutputDirectory.Check(request.OutDirectory, "--out");
        if (Directory.Exists(request.OutDirectory) && Directory.EnumerateFiles(request.OutDirectory, FilePrefix + "*").FirstOrDefault() is { } existing)
        {
            throw new CliError($"--out {request.OutDirectory} already holds share files ({Path.GetFileName(existing)}); move them away or give another directory");
        }
    }

    /// <summary>
    /// Splits <paramref name="master"/> for <paramref name="clusterId"/> and writes one file per share (0600, never
    /// overwriting). If any write fails the files already written are removed, so a failed split leaves nothing.
    /// </summary>
    public static IReadOnlyList<string> Write(MasterSecret master, string clusterId, ShareRequest request) =>
        Write(master, clusterId, 1, request);

    /// <summary>
    /// <inheritdoc cref="Write(MasterSecret, string, ShareRequest)"/> The shares name <paramref name="generation"/>
    /// (rotation): the cluster ID stays the cluster's, the generation tells which key check the secret must derive.
    /// </summary>
    public static IReadOnlyList<string> Write(MasterSecret master, string clusterId, int generation, ShareRequest request)
    {
        CheckOutput(request);
        // Opened once and written relative to the descriptor: a directory swapped for a link under a writable parent
        // after the check does not receive a share.
        using var directory = PrivateOutputDirectory.Open(request.OutDirectory, "--out");
        var secret = master.ToJson();
        IReadOnlyList<SecretShare> shares;
        try
        {
            shares = SecretShares.Split(secret, clusterId, request.Threshold, request.Count, generation);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(secret);
        }
        var written = new List<string>();
        try
        {
            foreach (var share in shares)
            {
                var json = share.ToJson();
                try
                {
                    var encrypted = request.Recipients is not null;
                    var bytes = encrypted ? AgeFile.Encrypt(json, [request.Recipients![share.Index - 1]], armor: true) : json;
                    var name = FileName(share.Index, encrypted);
                    WriteNew(directory, name, bytes);
                    written.Add(Path.Combine(request.OutDirectory, name));
                }
                finally
                {
                    CryptographicOperations.ZeroMemory(json);
                }
            }
            return written;
        }
        catch
        {
            foreach (var path in written)
            {
                File.Delete(path);
            }
            throw;
        }
        finally
        {
            foreach (var share in shares)
            {
                share.Dispose();
            }
        }
    }

    private static void WriteNew(PrivateOutputDirectory directory, string name, byte[] bytes)
    {
        // CheckOutput found no share files and the directory is the operator's own 0700 one, so nobody else can have
        // put a file at this name since.
        if (File.Exists(Path.Combine(directory.Path, name)))
        {
            throw new CliError($"cannot write share file {Path.Combine(directory.Path, name)}: it already exists");
        }
        directory.WriteFile(name, bytes);
    }

    /// <summary>Reads every identity file (age-keygen's format); a missing or malformed one is one line naming it.</summary>
    public static List<AgeIdentity> LoadIdentities(IEnumerable<string> paths)
    {
        var identities = new List<AgeIdentity>();
        foreach (var given in paths)
        {
            var path = Path.GetFullPath(given);
            if (!File.Exists(path))
            {
                throw new CliError($"identity file {path} does not exist");
            }
            byte[] content;
            try
            {
                content = ReadBounded(path, AgeIdentity.MaxFileSize)
                    ?? throw new CliError($"identity file {path} is larger than {AgeIdentity.MaxFileSize} bytes; it is not an age identity file");
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new CliError($"identity file {path} cannot be read: {ex.GetType().Name}");
            }
            try
            {
                identities.AddRange(AgeIdentity.ParseFile(content, path));
            }
            catch (AgeException ex)
            {
                throw new CliError(ex.Message);
            }
            finally
            {
                CryptographicOperations.ZeroMemory(content);
            }
        }
        return identities;
    }

    /// <summary>
    /// Rebuilds the master secret from share files (or, for a single "-", shares pasted on <paramref name="stdin"/>
    /// one by one with "2 of 3 shares" on <paramref name="stderr"/>), refusing a share of another cluster, split or
    /// polynomial by name, too few shares, and a result that does not derive <paramref name="clusterId"/>.
    /// </summary>
    public static MasterSecret Combine(IReadOnlyList<string> shareArguments, IReadOnlyList<string> identityPaths, string clusterId, string measurementSalt, TextReader stdin, TextWriter stderr) =>
        Combine(shareArguments, identityPaths, KeyGenerations.ForGenerationOne(clusterId, measurementSalt), stdin, stderr, out _);

    /// <summary>
    /// Rebuilds the master secret as <see cref="Combine(IReadOnlyList{string}, IReadOnlyList{string}, string, string, TextReader, TextWriter)"/>
    /// does, for a workspace whose secret may have been rotated: the shares must carry the cluster's stable ID, their
    /// generation must be the workspace's current or pending one (shares of an older generation are void), and the
    /// rebuilt secret must derive that generation's key check. <paramref name="generation"/> is the shares' generation.
    /// </summary>
    public static MasterSecret Combine(IReadOnlyList<string> shareArguments, IReadOnlyList<string> identityPaths, KeyGenerations generations, TextReader stdin, TextWriter stderr, out int generation)
    {
        ArgumentNullException.ThrowIfNull(generations);
        var clusterId = generations.ClusterId;
        if (shareArguments.Contains("-") && shareArguments.Count > 1)
        {
            throw new CliError("--share - (paste) cannot be combined with share files", 2);
        }
        var identities = LoadIdentities(identityPaths);
        var shares = new List<SecretShare>();
        try
        {
            if (shareArguments is ["-"])
            {
                ReadPasted(stdin, stderr, identities, clusterId, shares);
            }
            else
            {
                foreach (var argument in shareArguments)
                {
                    var path = Path.GetFullPath(argument);
                    shares.Add(Open(ReadShareFile(path), path, identities));
                }
            }
            byte[] secret;
            try
            {
                secret = SecretShares.Combine(shares, clusterId);
            }
            catch (ShareException ex)
            {
                throw new CliError(ex.Message);
            }
            try
            {
                // Before the secret is parsed: shares of a void or unknown generation are refused by what they say.
                generation = shares[0].Generation;
                var keyCheck = generations.KeyCheckFor(generation, $"the shares are");
                var master = MasterSecret.Parse(secret);
                RequireClusterSecret(master, keyCheck, generations.MeasurementSalt, generation == 1
                    ? "the shares rebuild a secret that is not this cluster's (it derives another cluster ID)"
                    : $"the shares rebuild a secret that is not this cluster's secret of generation {generation} (it derives another key check)");
                return master;
            }
            catch (MasterSecretException ex)
            {
                throw new CliError($"the shares rebuild something that is not a master secret: {ex.Message}");
            }
            finally
            {
                CryptographicOperations.ZeroMemory(secret);
            }
        }
        finally
        {
            foreach (var share in shares)
            {
                share.Dispose();
            }
            foreach (var identity in identities)
            {
                identity.Dispose();
            }
        }
    }

    /// <summary>
    /// Fails with <paramref name="message"/> (and disposes <paramref name="master"/>) unless it derives
    /// <paramref name="keyCheck"/>: the recorded cluster ID for generation 1, the recorded key check for a later one
    /// (neither is secret).
    /// </summary>
    public static void RequireClusterSecret(MasterSecret master, string keyCheck, string measurementSalt, string message)
    {
        var derived = KeyDerivation.DeriveKeyCheck(master, Convert.FromHexString(measurementSalt));
        if (!CryptographicOperations.FixedTimeEquals(derived, Convert.FromHexString(keyCheck)))
        {
            master.Dispose();
            throw new CliError(message);
        }
    }

    private static byte[] ReadShareFile(string path)
    {
        if (Directory.Exists(path))
        {
            throw new CliError($"share file {path} is a directory");
        }
        if (!File.Exists(path))
        {
            throw new CliError($"share file {path} does not exist");
        }
        try
        {
            return ReadBounded(path, AgeFile.DefaultMaxFileSize)
                ?? throw new CliError($"share file {path} is larger than {AgeFile.DefaultMaxFileSize} bytes; it is not a share");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CliError($"share file {path} cannot be read: {ex.GetType().Name}");
        }
    }

    /// <summary>
    /// The file's bytes, or null when it holds more than <paramref name="max"/>. The limit is enforced on what is read,
    /// not on the size the file reports: a crafted path (a symlink to /dev/zero, a file still growing) reports 0 or
    /// a small length, and File.ReadAllBytes would then read until memory runs out.
    /// </summary>
    private static byte[]? ReadBounded(string path, int max)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0);
        var buffer = new byte[max + 1];
        var length = 0;
        int read;
        while (length < buffer.Length && (read = stream.Read(buffer, length, buffer.Length - length)) > 0)
        {
            length += read;
        }
        try
        {
            return length > max ? null : buffer.AsSpan(0, length).ToArray();
        }
        finally
        {
            CryptographicOperations.ZeroMemory(buffer);
        }
    }

    /// <summary>Decrypts (when it is an age file) and parses one share; errors name <paramref name="source"/>.</summary>
    private static SecretShare Open(byte[] content, string source, IReadOnlyCollection<AgeIdentity> identities)
    {
        byte[]? plaintext = null;
        try
        {
            if (AgeFile.LooksLikeAge(content))
            {
                if (identities.Count == 0)
                {
                    throw new CliError($"share {source} is encrypted; give its holder's age identity with --identity FILE");
                }
                plaintext = AgeFile.Decrypt(content, identities);
            }
            var share = SecretShare.Parse(plaintext ?? content);
            share.Source = source;
            return share;
        }
        catch (AgeException ex)
        {
            throw new CliError($"share {source}: {ex.Message}");
        }
        catch (ShareException ex)
        {
            throw new CliError($"share {source}: {ex.Message}");
        }
        finally
        {
            CryptographicOperations.ZeroMemory(content);
            if (plaintext is not null)
            {
                CryptographicOperations.ZeroMemory(plaintext);
            }
        }
    }

    /// <summary>Pasted shares: armored age text (or a plain share's JSON), each checked as it arrives, until K are in.</summary>
    private static void ReadPasted(TextReader stdin, TextWriter stderr, IReadOnlyCollection<AgeIdentity> identities, string clusterId, List<SecretShare> shares)
    {
        while (shares.Count == 0 || shares.Count < shares[0].Threshold)
        {
            var number = shares.Count + 1;
            stderr.WriteLine(shares.Count == 0
                ? $"Paste share {number} (the whole armored text, ending with {AgeFile.ArmorEnd}):"
                : $"Paste share {number} of {shares[0].Threshold}:");
            var text = ReadOnePasted(stdin, number);
            if (text is null)
            {
                throw new CliError(shares.Count == 0 ? "no shares given" : $"need {shares[0].Threshold} shares, have {shares.Count}");
            }
            var share = Open(text, $"pasted share {number}", identities);
            shares.Add(share);
            // Checked at once, so a holder who pasted a bad share hears it now, not after everybody else typed theirs.
            try
            {
                SecretShares.CheckEach(shares, clusterId);
            }
            catch (ShareException ex)
            {
                throw new CliError(ex.Message);
            }
            stderr.WriteLine($"{share.Describe()} accepted: {shares.Count} of {shares[0].Threshold} shares");
        }
    }

    private static byte[]? ReadOnePasted(TextReader stdin, int number)
    {
        var text = new StringBuilder();
        string? line;
        while ((line = stdin.ReadLine()) is not null)
        {
            if (text.Length == 0 && line.Trim().Length == 0)
            {
                continue;
            }
            text.Append(line).Append('\n');
            if (text.Length > MaxPastedChars)
            {
                throw new CliError($"pasted share {number} is longer than {MaxPastedChars} characters; it is not a share");
            }
            var trimmed = line.Trim();
            if (trimmed == AgeFile.ArmorEnd || (trimmed == "}" && text[0] == '{'))
            {
                var bytes = Encoding.UTF8.GetBytes(text.ToString());
                text.Clear();
                return bytes;
            }
        }
        return text.Length == 0 ? null : throw new CliError($"pasted share {number} ended before its last line");
    }
}
