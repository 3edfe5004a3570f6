using System.Text;
using System.Text.Json.Nodes;
using Asterism.Config;
using Asterism.Crypto;
using Asterism.Secrets;
using Asterism.Secrets.Tests;

namespace Asterism.Cli.Tests;

/// <summary>
/// secret split / verify and recover --share against a workspace with an initialized cluster's files (no provider
/// runs): good shares are accepted, and every bad input is one line, exit 1 or 2, with nothing written.
/// </summary>
public sealed class SecretCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("asterism-cli-secret-").FullName;
    private readonly AgeTool _age = new();
    private readonly List<AgeIdentity> _holders = [];

    public void Dispose()
    {
        foreach (var holder in _holders)
        {
            holder.Dispose();
        }
        _age.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private string PathOf(string name) => Path.Combine(_dir, name);

    /// <summary>An initialized cluster's workspace: state with the cluster ID the master secret file derives.</summary>
    private string Cluster(string name = "ws", bool initialized = true)
    {
        var workspace = Directory.CreateDirectory(PathOf(name)).FullName;
        File.WriteAllText(Path.Combine(workspace, ClusterConfig.FileName), "kept: config\n");
        using var master = MasterSecret.Generate();
        master.Save(Path.Combine(workspace, MasterSecret.DefaultFileName));
        var salt = new byte[32];
        Random.Shared.NextBytes(salt);
        using var measurementSecret = KeyDerivation.DeriveMeasurementSecret(master);
        var state = new ClusterState
        {
            Infrastructure = new InfrastructureSection
            {
                Uid = "uid",
                Name = name,
                ClusterEndpoint = "127.0.0.1",
                InClusterEndpoint = "127.0.0.1",
                Local = new LocalInfrastructure { Subnet = "127.9.9", MetadataEndpoint = "http://127.9.9.1:8080" },
            },
        };
        if (initialized)
        {
            state.ClusterValues.ClusterId = Convert.ToHexStringLower(KeyDerivation.DeriveClusterId(measurementSecret.Span, salt));
            state.ClusterValues.MeasurementSalt = Convert.ToHexStringLower(salt);
        }
        state.Save(Path.Combine(workspace, ClusterState.FileName));
        return workspace;
    }

    /// <summary>A holder's identity file (as age-keygen writes it) and recipient.</summary>
    private (string IdentityFile, string Recipient) Holder(int n)
    {
        var identity = AgeIdentity.Generate();
        _holders.Add(identity);
        var path = PathOf($"holder{n}.txt");
        File.WriteAllText(path, $"# holder {n}\n{identity.Encode()}\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return (path, identity.Recipient.ToString());
    }

    private static void AssertOneLine(int expectedCode, (int ExitCode, string Stdout, string Stderr) run, string expected)
    {
        Assert.True(run.ExitCode == expectedCode, $"exit {run.ExitCode}: {run.Stderr}");
        Assert.StartsWith("Error: " + expected, run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)[0], StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", run.Stderr, StringComparison.Ordinal);
    }

    private static string ShareFile(string workspace, int index, bool encrypted = true) =>
        Path.Combine(workspace, ShareOptions.DefaultOutDirectory, ShareFiles.FileName(index, encrypted));

    private async Task<(string Workspace, (string IdentityFile, string Recipient)[] Holders)> SplitThreeOfFiveAsync()
    {
        var workspace = Cluster();
        var holders = Enumerable.Range(1, 5).Select(Holder).ToArray();
        var args = new List<string> { "secret", "split", "--threshold", "3", "--shares", "5", "-C", workspace };
        foreach (var holder in holders)
        {
            args.AddRange(["--recipient", holder.Recipient]);
        }
        var run = await CliHarness.RunAsync([.. args]);
        Assert.True(run.ExitCode == 0, run.Stderr);
        return (workspace, holders);
    }

    private async Task<string> SplitPlainAsync(string workspace, int threshold, int count)
    {
        var run = await CliHarness.RunAsync("secret", "split", "--threshold", $"{threshold}", "--shares", $"{count}", "--no-encrypt", "-C", workspace);
        Assert.True(run.ExitCode == 0, run.Stderr);
        return Path.Combine(workspace, ShareOptions.DefaultOutDirectory);
    }

    [Fact]
    public async Task Rotate_NoClusterApiCredential_RefusedBeforeAnythingWritten()
    {
        var workspace = Cluster();
        var before = Directory.GetFileSystemEntries(workspace).Order().ToArray();
        var run = await CliHarness.RunAsync("secret", "rotate", "-C", workspace);
        AssertOneLine(1, run, "");
        Assert.Contains("no cluster API credential", run.Stderr, StringComparison.Ordinal);
        Assert.Equal(before, Directory.GetFileSystemEntries(workspace).Order().ToArray());
    }

    [Fact]
    public async Task Split_RecipientPerShare_AgeOpensEachAndVerifyAccepts()
    {
        var (workspace, holders) = await SplitThreeOfFiveAsync();
        for (var i = 1; i <= 5; i++)
        {
            var file = ShareFile(workspace, i);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
            var (code, plaintext, stderr) = _age.Run("age", "-d", "-i", holders[i - 1].IdentityFile, file);
            Assert.True(code == 0, stderr);
            Assert.Equal(i, JsonNode.Parse(plaintext)!["index"]!.GetValue<int>());
            // Another holder's key does not open it.
            Assert.NotEqual(0, _age.Run("age", "-d", "-i", holders[i % 5].IdentityFile, file).ExitCode);
        }
        var verify = await CliHarness.RunAsync("secret", "verify", "-C", workspace,
            "--share", ShareFile(workspace, 5), "--share", ShareFile(workspace, 2), "--share", ShareFile(workspace, 4),
            "--identity", holders[1].IdentityFile, "--identity", holders[3].IdentityFile, "--identity", holders[4].IdentityFile);
        Assert.True(verify.ExitCode == 0, verify.Stderr);
        Assert.StartsWith("OK: the shares rebuild the master secret of cluster ", verify.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Verify_ShareReEncryptedByAgeTool_Accepted()
    {
        var (workspace, holders) = await SplitThreeOfFiveAsync();
        // A holder moved their share to a new key with the real age: ours must read what age writes.
        var (_, plaintext, _) = _age.Run("age", "-d", "-i", holders[0].IdentityFile, ShareFile(workspace, 1));
        File.WriteAllBytes(PathOf("plain1"), plaintext);
        var (code, _, stderr) = _age.Run("age", "-e", "-r", holders[4].Recipient, "-o", PathOf("moved1.age"), PathOf("plain1"));
        Assert.True(code == 0, stderr);
        var verify = await CliHarness.RunAsync("secret", "verify", "-C", workspace, "--share", PathOf("moved1.age"),
            "--share", ShareFile(workspace, 2), "--share", ShareFile(workspace, 3),
            "--identity", holders[4].IdentityFile, "--identity", holders[1].IdentityFile, "--identity", holders[2].IdentityFile);
        Assert.True(verify.ExitCode == 0, verify.Stderr);
    }

    [Fact]
    public async Task Split_OneRecipientForAll_EveryShareOpensWithIt()
    {
        var workspace = Cluster();
        var holder = Holder(1);
        var run = await CliHarness.RunAsync("secret", "split", "--threshold", "2", "--shares", "3", "-r", holder.Recipient, "-C", workspace);
        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Contains($"for {holder.Recipient}", run.Stdout, StringComparison.Ordinal);
        for (var i = 1; i <= 3; i++)
        {
            Assert.Equal(0, _age.Run("age", "-d", "-i", holder.IdentityFile, ShareFile(workspace, i)).ExitCode);
        }
    }

    public static TheoryData<string[], string> SplitUsageErrors => new()
    {
        { new[] { "--threshold", "2", "--shares", "3" }, "give each holder's age recipient with --recipient" },
        { new[] { "--threshold", "4", "--shares", "3", "--no-encrypt" }, "--threshold 4 is greater than --shares 3" },
        { new[] { "--threshold", "1", "--shares", "3", "--no-encrypt" }, "--threshold must be at least 2" },
        { new[] { "--shares", "3", "--no-encrypt" }, "--threshold K is required with --shares" },
        { new[] { "--threshold", "2", "--no-encrypt" }, "--shares N is required" },
        { new[] { "--threshold", "2", "--shares", "3", "-r", "age1notarecipient" }, "--recipient \"age1notarecipient\" is not an age X25519 recipient" },
        { new[] { "--threshold", "2", "--shares", "300", "--no-encrypt" }, "--shares must be 2..255, not 300" },
    };

    [Theory]
    [MemberData(nameof(SplitUsageErrors))]
    public async Task Split_BadOptions_UsageErrorNothingWritten(string[] options, string expected)
    {
        var workspace = Cluster();
        var run = await CliHarness.RunAsync([.. new[] { "secret", "split", "-C", workspace }, .. options]);
        AssertOneLine(2, run, expected);
        Assert.False(Directory.Exists(Path.Combine(workspace, ShareOptions.DefaultOutDirectory)));
    }

    [Fact]
    public async Task Split_RecipientCountMismatch_UsageError()
    {
        var workspace = Cluster();
        var run = await CliHarness.RunAsync("secret", "split", "-C", workspace, "--threshold", "2", "--shares", "3", "-r", Holder(1).Recipient, "-r", Holder(2).Recipient);
        AssertOneLine(2, run, "2 recipients for 3 shares: give one per share or one for all");
    }

    [Fact]
    public async Task Split_NoEncryptWithRecipient_UsageError()
    {
        var workspace = Cluster();
        var run = await CliHarness.RunAsync("secret", "split", "-C", workspace, "--threshold", "2", "--shares", "3", "-r", Holder(1).Recipient, "--no-encrypt");
        AssertOneLine(2, run, "--no-encrypt and --recipient exclude each other");
    }

    [Fact]
    public async Task Split_NotInitialized_RefusedNothingWritten()
    {
        var workspace = Cluster(initialized: false);
        var run = await CliHarness.RunAsync("secret", "split", "-C", workspace, "--threshold", "2", "--shares", "3", "--no-encrypt");
        AssertOneLine(1, run, "the cluster in");
        Assert.False(Directory.Exists(Path.Combine(workspace, ShareOptions.DefaultOutDirectory)));
    }

    [Fact]
    public async Task Split_MasterSecretOfAnotherCluster_RefusedNothingWritten()
    {
        var workspace = Cluster();
        var other = Cluster("other");
        var run = await CliHarness.RunAsync("secret", "split", "-C", workspace, "--threshold", "2", "--shares", "3", "--no-encrypt",
            "--master-secret", Path.Combine(other, MasterSecret.DefaultFileName));
        AssertOneLine(1, run, $"master secret file \"{Path.Combine(other, MasterSecret.DefaultFileName)}\" is not the secret of this cluster");
        Assert.False(Directory.Exists(Path.Combine(workspace, ShareOptions.DefaultOutDirectory)));
    }

    [Fact]
    public async Task Split_OutAlreadyHoldsShares_RefusedOldSharesKept()
    {
        var workspace = Cluster();
        var dir = await SplitPlainAsync(workspace, 2, 3);
        var before = File.ReadAllBytes(Path.Combine(dir, ShareFiles.FileName(1, false)));
        var run = await CliHarness.RunAsync("secret", "split", "-C", workspace, "--threshold", "2", "--shares", "3", "--no-encrypt");
        AssertOneLine(1, run, $"--out {dir} already holds share files");
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(dir, ShareFiles.FileName(1, false))));
    }

    [Fact]
    public async Task Verify_ThresholdMinusOne_NeedThreeHaveTwo()
    {
        var workspace = Cluster();
        var dir = await SplitPlainAsync(workspace, 3, 5);
        var run = await CliHarness.RunAsync("secret", "verify", "-C", workspace,
            "--share", Path.Combine(dir, ShareFiles.FileName(1, false)), "--share", Path.Combine(dir, ShareFiles.FileName(4, false)));
        AssertOneLine(1, run, "need 3 shares, have 2");
    }

    [Fact]
    public async Task Verify_TamperedShare_NamedByIndex()
    {
        var workspace = Cluster();
        var dir = await SplitPlainAsync(workspace, 2, 3);
        var second = Path.Combine(dir, ShareFiles.FileName(2, false));
        var json = JsonNode.Parse(File.ReadAllBytes(second))!;
        var value = json["value"]!.GetValue<string>();
        json["value"] = (value[0] == 'a' ? "b" : "a") + value[1..];
        File.WriteAllText(second, json.ToJsonString());
        var run = await CliHarness.RunAsync("secret", "verify", "-C", workspace,
            "--share", Path.Combine(dir, ShareFiles.FileName(1, false)), "--share", second);
        AssertOneLine(1, run, $"share 2 ({second}) does not match the commitments");
    }

    [Fact]
    public async Task Verify_SharesOfAnotherCluster_Refused()
    {
        var workspace = Cluster();
        var other = Cluster("other");
        var dir = await SplitPlainAsync(other, 2, 2);
        var run = await CliHarness.RunAsync("secret", "verify", "-C", workspace,
            "--share", Path.Combine(dir, ShareFiles.FileName(1, false)), "--share", Path.Combine(dir, ShareFiles.FileName(2, false)));
        AssertOneLine(1, run, $"share 1 ({Path.Combine(dir, ShareFiles.FileName(1, false))}) belongs to cluster ");
    }

    [Fact]
    public async Task Verify_SharesThatLieAboutTheirCluster_RefusedByDerivedClusterId()
    {
        // A split of another secret relabelled with this cluster's ID: self-consistent, but not this cluster's secret.
        var workspace = Cluster();
        var clusterId = ClusterState.Load(Path.Combine(workspace, ClusterState.FileName)).ClusterValues.ClusterId!;
        using var foreign = MasterSecret.Generate();
        var shares = SecretShares.Split(foreign.ToJson(), clusterId, 2, 2);
        var paths = shares.Select(s => { var p = PathOf($"forged{s.Index}.json"); File.WriteAllBytes(p, s.ToJson()); return p; }).ToArray();
        var run = await CliHarness.RunAsync("secret", "verify", "-C", workspace, "--share", paths[0], "--share", paths[1]);
        AssertOneLine(1, run, "the shares rebuild a secret that is not this cluster's");
    }

    [Fact]
    public async Task Verify_DuplicateShare_Refused()
    {
        var workspace = Cluster();
        var dir = await SplitPlainAsync(workspace, 2, 3);
        var first = Path.Combine(dir, ShareFiles.FileName(1, false));
        File.Copy(first, PathOf("copy.json"));
        var run = await CliHarness.RunAsync("secret", "verify", "-C", workspace, "--share", first, "--share", PathOf("copy.json"));
        AssertOneLine(1, run, $"share 1 was given twice ({first} and {PathOf("copy.json")})");
    }

    [Fact]
    public async Task Verify_WrongFormatVersion_OneLine()
    {
        var workspace = Cluster();
        var dir = await SplitPlainAsync(workspace, 2, 2);
        var first = Path.Combine(dir, ShareFiles.FileName(1, false));
        var json = JsonNode.Parse(File.ReadAllBytes(first))!;
        json["version"] = 3;
        File.WriteAllText(first, json.ToJsonString());
        var run = await CliHarness.RunAsync("secret", "verify", "-C", workspace, "--share", first, "--share", Path.Combine(dir, ShareFiles.FileName(2, false)));
        AssertOneLine(1, run, $"share {first}: share format version 3 is not supported (this asterism reads versions 1 to 2)");
    }

    [Fact]
    public async Task Verify_EncryptedShareWithoutIdentity_SaysWhatIsMissing()
    {
        var (workspace, _) = await SplitThreeOfFiveAsync();
        var run = await CliHarness.RunAsync("secret", "verify", "-C", workspace, "--share", ShareFile(workspace, 1));
        AssertOneLine(1, run, $"share {ShareFile(workspace, 1)} is encrypted; give its holder's age identity with --identity FILE");
    }

    [Fact]
    public async Task Verify_WrongIdentity_NamesTheShare()
    {
        var (workspace, holders) = await SplitThreeOfFiveAsync();
        var run = await CliHarness.RunAsync("secret", "verify", "-C", workspace, "--share", ShareFile(workspace, 1), "--identity", holders[1].IdentityFile);
        AssertOneLine(1, run, $"share {ShareFile(workspace, 1)}: none of the given identities opens this file");
    }

    [Fact]
    public async Task Verify_ShareSymlinkedToDevZero_RefusedAtTheSizeLimit()
    {
        // A crafted "share" that reports length 0 and never ends: the limit holds on what is read, not on the size.
        var workspace = Cluster();
        var dir = await SplitPlainAsync(workspace, 2, 2);
        var endless = PathOf("endless-share.json");
        File.CreateSymbolicLink(endless, "/dev/zero");
        var run = await CliHarness.RunAsync("secret", "verify", "-C", workspace, "--share", Path.Combine(dir, ShareFiles.FileName(1, false)), "--share", endless);
        AssertOneLine(1, run, $"share file {endless} is larger than {AgeFile.DefaultMaxFileSize} bytes; it is not a share");
    }

    [Fact]
    public async Task Verify_IdentitySymlinkedToDevZero_RefusedAtTheSizeLimit()
    {
        var (workspace, _) = await SplitThreeOfFiveAsync();
        var endless = PathOf("endless-identity.txt");
        File.CreateSymbolicLink(endless, "/dev/zero");
        var run = await CliHarness.RunAsync("secret", "verify", "-C", workspace, "--share", ShareFile(workspace, 1), "--identity", endless);
        AssertOneLine(1, run, $"identity file {endless} is larger than {AgeIdentity.MaxFileSize} bytes; it is not an age identity file");
    }

    [Fact]
    public async Task Verify_ShareWithInvalidUtf8_OneLineNoStackTrace()
    {
        var workspace = Cluster();
        var dir = await SplitPlainAsync(workspace, 2, 2);
        var first = Path.Combine(dir, ShareFiles.FileName(1, false));
        var bytes = File.ReadAllBytes(first);
        var at = Array.IndexOf(bytes, (byte)'s', Array.IndexOf(bytes, (byte)':'));
        bytes[at] = 0xD0;
        File.WriteAllBytes(first, bytes);
        var run = await CliHarness.RunAsync("secret", "verify", "-C", workspace, "--share", first, "--share", Path.Combine(dir, ShareFiles.FileName(2, false)));
        AssertOneLine(1, run, $"share {first}: not valid UTF-8: not an Asterism secret share");
    }

    [Fact]
    public async Task Verify_MissingIdentityFile_OneLine()
    {
        var (workspace, _) = await SplitThreeOfFiveAsync();
        var run = await CliHarness.RunAsync("secret", "verify", "-C", workspace, "--share", ShareFile(workspace, 1), "--identity", PathOf("nope.txt"));
        AssertOneLine(1, run, $"identity file {PathOf("nope.txt")} does not exist");
    }

    [Fact]
    public async Task Verify_MissingShareFile_OneLine()
    {
        var workspace = Cluster();
        var run = await CliHarness.RunAsync("secret", "verify", "-C", workspace, "--share", PathOf("gone.age"));
        AssertOneLine(1, run, $"share file {PathOf("gone.age")} does not exist");
    }

    [Fact]
    public async Task Recover_SharesAndMasterSecret_UsageError()
    {
        var workspace = Cluster();
        var run = await CliHarness.RunAsync("recover", "-C", workspace, "--share", "a", "--master-secret", "b");
        AssertOneLine(2, run, "--share and --master-secret exclude each other");
    }

    [Fact]
    public async Task Recover_TwoOfThreeShares_RefusedBeforeAnythingElse()
    {
        var workspace = Cluster();
        var dir = await SplitPlainAsync(workspace, 3, 3);
        var run = await CliHarness.RunAsync("recover", "-C", workspace,
            "--share", Path.Combine(dir, ShareFiles.FileName(1, false)), "--share", Path.Combine(dir, ShareFiles.FileName(3, false)));
        AssertOneLine(1, run, "need 3 shares, have 2");
    }

    [Fact]
    public async Task Recover_TamperedShare_RefusedBeforeAnyNode()
    {
        var (workspace, holders) = await SplitThreeOfFiveAsync();
        var (_, plaintext, _) = _age.Run("age", "-d", "-i", holders[2].IdentityFile, ShareFile(workspace, 3));
        var json = JsonNode.Parse(plaintext)!;
        var commitment = json["commitments"]![0]!.GetValue<string>();
        var other = SecretShares.Split("x"u8, json["clusterId"]!.GetValue<string>(), 3, 5)[0];
        json["commitments"]![0] = Convert.ToHexStringLower(other.Commitments[0]);
        Assert.NotEqual(commitment, json["commitments"]![0]!.GetValue<string>());
        File.WriteAllText(PathOf("plain3"), json.ToJsonString());
        Assert.Equal(0, _age.Run("age", "-e", "-r", holders[2].Recipient, "-o", PathOf("tampered3.age"), PathOf("plain3")).ExitCode);
        var run = await CliHarness.RunAsync("recover", "-C", workspace, "--share", ShareFile(workspace, 1), "--share", ShareFile(workspace, 2), "--share", PathOf("tampered3.age"),
            "-i", holders[0].IdentityFile, "-i", holders[1].IdentityFile, "-i", holders[2].IdentityFile);
        AssertOneLine(1, run, $"share 3 ({PathOf("tampered3.age")}) is not from the same split as share 1");
    }

    [Fact]
    public async Task Recover_GoodShares_GoesOnToTheConfiguration()
    {
        // The shares are accepted: the next step (reading asterism-conf.yaml, here a dummy) is what fails.
        var workspace = Cluster();
        var dir = await SplitPlainAsync(workspace, 2, 3);
        var run = await CliHarness.RunAsync("recover", "-C", workspace,
            "--share", Path.Combine(dir, ShareFiles.FileName(3, false)), "--share", Path.Combine(dir, ShareFiles.FileName(1, false)));
        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith($"Error: {ClusterConfig.FileName}", run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Combine_PastedShares_ProgressAndSecret()
    {
        var (workspace, holders) = await SplitThreeOfFiveAsync();
        var state = ClusterState.Load(Path.Combine(workspace, ClusterState.FileName));
        var pasted = string.Concat(new[] { 2, 5, 1 }.Select(i => "\n" + File.ReadAllText(ShareFile(workspace, i))));
        var stderr = new StringWriter();
        using var master = ShareFiles.Combine(["-"], [.. holders.Select(h => h.IdentityFile)], state.ClusterValues.ClusterId!, state.ClusterValues.MeasurementSalt!, new StringReader(pasted), stderr);
        using var expected = MasterSecret.Load(Path.Combine(workspace, MasterSecret.DefaultFileName));
        Assert.True(master.Key.SequenceEqual(expected.Key) && master.Salt.SequenceEqual(expected.Salt));
        Assert.Contains("share 2 (pasted share 1) accepted: 1 of 3 shares", stderr.ToString(), StringComparison.Ordinal);
        Assert.Contains("share 5 (pasted share 2) accepted: 2 of 3 shares", stderr.ToString(), StringComparison.Ordinal);
        Assert.Contains("share 1 (pasted share 3) accepted: 3 of 3 shares", stderr.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Combine_PasteEndsEarly_NeedThreeHaveTwo()
    {
        var (workspace, holders) = await SplitThreeOfFiveAsync();
        var state = ClusterState.Load(Path.Combine(workspace, ClusterState.FileName));
        var pasted = File.ReadAllText(ShareFile(workspace, 1)) + File.ReadAllText(ShareFile(workspace, 2));
        var ex = Assert.Throws<CliError>(() => ShareFiles.Combine(["-"], [.. holders.Select(h => h.IdentityFile)], state.ClusterValues.ClusterId!, state.ClusterValues.MeasurementSalt!, new StringReader(pasted), new StringWriter()));
        Assert.Equal("need 3 shares, have 2", ex.Message);
    }

    [Fact]
    public async Task Combine_PastedDuplicate_NamedAtOnce()
    {
        var (workspace, holders) = await SplitThreeOfFiveAsync();
        var state = ClusterState.Load(Path.Combine(workspace, ClusterState.FileName));
        var pasted = File.ReadAllText(ShareFile(workspace, 1)) + File.ReadAllText(ShareFile(workspace, 1)) + File.ReadAllText(ShareFile(workspace, 2));
        var stderr = new StringWriter();
        var ex = Assert.Throws<CliError>(() => ShareFiles.Combine(["-"], [.. holders.Select(h => h.IdentityFile)], state.ClusterValues.ClusterId!, state.ClusterValues.MeasurementSalt!, new StringReader(pasted), stderr));
        Assert.Equal("share 1 was given twice (pasted share 1 and pasted share 2); give each share once", ex.Message);
        Assert.DoesNotContain("Paste share 3", stderr.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Combine_PastedTruncated_OneLine()
    {
        var (workspace, holders) = await SplitThreeOfFiveAsync();
        var state = ClusterState.Load(Path.Combine(workspace, ClusterState.FileName));
        var text = File.ReadAllText(ShareFile(workspace, 1));
        var ex = Assert.Throws<CliError>(() => ShareFiles.Combine(["-"], [.. holders.Select(h => h.IdentityFile)], state.ClusterValues.ClusterId!, state.ClusterValues.MeasurementSalt!, new StringReader(text[..(text.Length / 2)]), new StringWriter()));
        Assert.Equal("pasted share 1 ended before its last line", ex.Message);
    }

    [Theory]
    [InlineData(new[] { "--threshold", "2" }, "--threshold, --recipient, --out and --no-encrypt need --shares N")]
    [InlineData(new[] { "--shares", "3", "--threshold", "4", "--no-encrypt" }, "--threshold 4 is greater than --shares 3")]
    [InlineData(new[] { "--shares", "3", "--threshold", "1", "--no-encrypt" }, "--threshold must be at least 2")]
    [InlineData(new[] { "--shares", "3", "--threshold", "2" }, "give each holder's age recipient with --recipient")]
    public async Task Init_BadShareOptions_UsageErrorNothingWritten(string[] options, string expected)
    {
        var workspace = Cluster(initialized: false);
        File.Delete(Path.Combine(workspace, MasterSecret.DefaultFileName));
        var run = await CliHarness.RunAsync([.. new[] { "init", "-C", workspace }, .. options]);
        AssertOneLine(2, run, expected);
        Assert.Equal([ClusterConfig.FileName, ClusterState.FileName], Directory.GetFileSystemEntries(workspace).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Init_SharesWithExistingMasterSecret_RefusedNothingWritten()
    {
        var workspace = Cluster(initialized: false);
        var run = await CliHarness.RunAsync("init", "-C", workspace, "--shares", "3", "--threshold", "2", "--no-encrypt");
        AssertOneLine(1, run, "--shares: the master secret file");
        Assert.False(Directory.Exists(Path.Combine(workspace, ShareOptions.DefaultOutDirectory)));
    }

    [Fact]
    public async Task Help_SecretCommands_DescribeEveryOption()
    {
        var split = await CliHarness.RunAsync("secret", "split", "--help");
        foreach (var option in new[] { "--threshold", "--shares", "--recipient", "--out", "--master-secret", "--no-encrypt" })
        {
            Assert.Contains(option, split.Stdout, StringComparison.Ordinal);
        }
        var verify = await CliHarness.RunAsync("secret", "verify", "--help");
        Assert.Contains("--identity", verify.Stdout, StringComparison.Ordinal);
        var recover = await CliHarness.RunAsync("recover", "--help");
        Assert.Contains("--share", recover.Stdout, StringComparison.Ordinal);
        Assert.Contains("--identity", recover.Stdout, StringComparison.Ordinal);
    }
}
