using System.Security.Cryptography.X509Certificates;
using Asterism.Attestation.Identities;
using Asterism.Cloud;
using Asterism.Cloud.Local;
using Asterism.Config;
using Asterism.Tpm;

namespace Asterism.Cli.Tests;

/// <summary>
/// A "hardware" TPM for <c>asterism tpm enroll</c>: a swtpm whose EK certificate a TPM vendor's CA signed
/// (swtpm_setup), with the endorsement hierarchy auth set, plus a second vendor that did not make it.
/// </summary>
public sealed class VendorTpmFixture : IAsyncLifetime
{
    public string Directory { get; private set; } = null!;

    public SwtpmManufacturer Vendor { get; private set; } = null!;

    public SwtpmManufacturer OtherVendor { get; private set; } = null!;

    public SwtpmProcess Tpm { get; private set; } = null!;

    public byte[] Auth { get; } = TpmEndorsementAuth.Generate();

    /// <summary>A 0600 file holding <see cref="Auth"/>, as an operator would keep it.</summary>
    public string AuthFile => Path.Combine(Directory, "vendor-tpm.auth");

    public string Endpoint => "unix:" + Tpm.SocketPath;

    public string VendorPem => Vendor.Certificate.ExportCertificatePem();

    public async Task InitializeAsync()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("asterism-enroll-").FullName;
        Vendor = SwtpmManufacturer.LoadOrCreate(Path.Combine(Directory, "vendor"), "Test TPM vendor");
        OtherVendor = SwtpmManufacturer.LoadOrCreate(Path.Combine(Directory, "other-vendor"), "Another TPM vendor");
        await Vendor.ManufactureAsync(Path.Combine(Directory, "tpm"), CancellationToken.None);
        Tpm = await SwtpmProcess.StartAsync(Path.Combine(Directory, "tpm"), CancellationToken.None);
        await using (var client = await Tpm.ConnectAsync(null, CancellationToken.None))
        {
            await client.HierarchyChangeAuthAsync(TpmHierarchy.Endorsement, default, Auth, CancellationToken.None);
        }
        File.WriteAllBytes(AuthFile, Auth);
        File.SetUnixFileMode(AuthFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    /// <summary>The SubjectPublicKeyInfo of the TPM's attestation key, derived independently of the CLI.</summary>
    public async Task<byte[]> AttestationKeySpkiAsync()
    {
        await using var client = await Tpm.ConnectAsync(null, CancellationToken.None);
        await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, Auth, CancellationToken.None);
        return ak.PublicKey.ExportSubjectPublicKeyInfo();
    }

    public async Task DisposeAsync()
    {
        await Tpm.DisposeAsync();
        System.IO.Directory.Delete(Directory, recursive: true);
    }
}

/// <summary>
/// <c>asterism tpm enroll</c> in-process against a vendor-made swtpm and a hand-made workspace (config, state,
/// provider CA; no provider runs): it certifies the TPM's own AK only when the EK chains to a trusted vendor, and
/// every operator mistake or attack ends in one clear line with nothing written.
/// </summary>
public sealed class TpmEnrollTests(VendorTpmFixture tpm) : IClassFixture<VendorTpmFixture>, IDisposable
{
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode PrivateDirectory = Private | UnixFileMode.UserExecute;

    private readonly string _dir = Directory.CreateTempSubdirectory("asterism-cli-enroll-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    /// <summary>A workspace as <c>create --variant tpm</c> leaves it, trusting <paramref name="manufacturerPem"/> for hardware TPMs.</summary>
    private string Workspace(string? manufacturerPem)
    {
        var workspace = Directory.CreateDirectory(PathOf("ws")).FullName;
        string providerPem;
        using (var ca = ProviderCa.LoadOrCreate(new CloudWorkspace(workspace).CloudDir))
        {
            providerPem = ca.CertificatePem;
        }
        new ClusterConfig
        {
            Attestation = new AttestationSection { Variant = "tpm", ProviderCa = providerPem, TpmManufacturerCa = manufacturerPem },
            Nodes = new NodesSection { ControlPlanes = 1, Workers = 1 },
        }.Save(Path.Combine(workspace, ClusterConfig.FileName));
        new ClusterState
        {
            Infrastructure = new InfrastructureSection
            {
                Uid = "1a2b3c4d",
                Name = "asterism-1a2b3c4d",
                ClusterEndpoint = "127.42.7.2",
                InClusterEndpoint = "127.42.7.2",
                Local = new LocalInfrastructure { Subnet = "127.42.7", MetadataEndpoint = "http://127.42.7.1:8080" },
            },
        }.Save(Path.Combine(workspace, ClusterState.FileName));
        return workspace;
    }

    /// <summary>Runs enroll against the vendor TPM with its auth file, unless <paramref name="extra"/> names another.</summary>
    private Task<(int ExitCode, string Stdout, string Stderr)> EnrollAsync(string workspace, string name, string role, string outDir, params string[] extra) =>
        CliHarness.RunAsync(["tpm", "enroll", name, "--role", role, "--out", outDir, "--tpm", tpm.Endpoint, "-C", workspace,
            .. extra.Contains("--endorsement-auth-file") ? extra : [.. extra, "--endorsement-auth-file", tpm.AuthFile]]);

    private static void AssertOneLine(int expectedCode, (int ExitCode, string Stdout, string Stderr) run, params string[] expected)
    {
        Assert.True(run.ExitCode == expectedCode, $"exit {run.ExitCode}: {run.Stderr}{run.Stdout}");
        var lines = run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(lines);
        Assert.StartsWith("Error: ", lines[0], StringComparison.Ordinal);
        foreach (var part in expected)
        {
            Assert.Contains(part, lines[0], StringComparison.Ordinal);
        }
        Assert.DoesNotContain("   at ", run.Stderr, StringComparison.Ordinal);
        Assert.Empty(run.Stdout);
    }

    private static void AssertNoIdentity(string outDir) =>
        Assert.False(File.Exists(IdentityFiles.CertificatePath(outDir)), $"{outDir} holds an identity certificate");

    /// <summary>Checks DIR/identity.pem against the workspace's provider CA: this name, this role, exactly this AK.</summary>
    private static NodeIdentity AssertCertified(string workspace, string outDir, byte[] akSpki, string name, string role)
    {
        using var ca = ProviderCa.Load(new CloudWorkspace(workspace).CloudDir);
        using var authority = ca.CreateAuthority();
        var der = IdentityFiles.ReadCertificate(IdentityFiles.CertificatePath(outDir));
        var check = authority.Verify(der, akSpki, DateTimeOffset.UtcNow);
        Assert.True(check.Accepted, check.Error);
        Assert.Equal(name, check.Identity!.Name);
        Assert.Equal(role, check.Identity.Role);
        using var certificate = X509CertificateLoader.LoadCertificate(der);
        Assert.Contains($"CN={name}", certificate.Subject, StringComparison.Ordinal);
        Assert.Contains($"OU={role}", certificate.Subject, StringComparison.Ordinal);
        Assert.Equal(ca.Certificate.RawData, IdentityFiles.ReadCertificate(IdentityFiles.AuthorityPath(outDir)));
        return check.Identity;
    }

    [Fact]
    public async Task Enroll_VendorCaInConfig_CertifiesTheTpmsAkOnceThenChangesNothing()
    {
        var workspace = Workspace(tpm.VendorPem);
        var outDir = PathOf("node-a");

        var run = await EnrollAsync(workspace, "metal-cp-0", "control-plane", outDir);

        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.StartsWith("Enrolled metal-cp-0 (control-plane): attestation key ", run.Stdout, StringComparison.Ordinal);
        Assert.Empty(run.Stderr);
        Assert.Equal(PrivateDirectory, File.GetUnixFileMode(outDir));
        foreach (var file in Directory.GetFiles(outDir))
        {
            Assert.True(File.GetUnixFileMode(file) == Private, $"{file} is {File.GetUnixFileMode(file)}");
        }
        var identity = AssertCertified(workspace, outDir, await tpm.AttestationKeySpkiAsync(), "metal-cp-0", NodeIdentity.ControlPlaneRole);
        // The node boots with --tpm and this directory: it needs the endorsement auth next to its identity.
        Assert.Equal(tpm.Auth, TpmEndorsementAuth.Load(outDir));

        var before = Snapshot(outDir);
        var again = await EnrollAsync(workspace, "metal-cp-0", "control-plane", outDir);

        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Equal($"metal-cp-0 (control-plane) is already enrolled with this TPM's attestation key in {outDir}; nothing changed\n", again.Stdout);
        Assert.Equal(before, Snapshot(outDir));
        Assert.Equal(identity.CertificateFingerprint, AssertCertified(workspace, outDir, await tpm.AttestationKeySpkiAsync(), "metal-cp-0", NodeIdentity.ControlPlaneRole).CertificateFingerprint);
    }

    [Fact]
    public async Task Enroll_ExistingOpenDirectory_TightenedTo0700()
    {
        var workspace = Workspace(tpm.VendorPem);
        var outDir = Directory.CreateDirectory(PathOf("open-node")).FullName;
        File.SetUnixFileMode(outDir, (UnixFileMode)0b111_101_101);

        var run = await EnrollAsync(workspace, "metal-w-1", "worker", outDir);

        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Equal(PrivateDirectory, File.GetUnixFileMode(outDir));
        AssertCertified(workspace, outDir, await tpm.AttestationKeySpkiAsync(), "metal-w-1", NodeIdentity.WorkerRole);
    }

    [Fact]
    public async Task Enroll_EkCaFileGiven_OverridesTheConfig()
    {
        // The config trusts another vendor only; --ek-ca names the one that made this TPM.
        var workspace = Workspace(tpm.OtherVendor.Certificate.ExportCertificatePem());
        var outDir = PathOf("node-b");

        var run = await EnrollAsync(workspace, "metal-w-0", "worker", outDir, "--ek-ca", tpm.Vendor.CertificatePath);

        Assert.True(run.ExitCode == 0, run.Stderr);
        AssertCertified(workspace, outDir, await tpm.AttestationKeySpkiAsync(), "metal-w-0", NodeIdentity.WorkerRole);
    }

    [Fact]
    public async Task Enroll_EkCaFileOfAnotherVendor_OverridesTheConfigAndRefuses()
    {
        var workspace = Workspace(tpm.VendorPem);
        var outDir = PathOf("node-c");

        var run = await EnrollAsync(workspace, "metal-w-0", "worker", outDir, "--ek-ca", tpm.OtherVendor.CertificatePath);

        AssertOneLine(1, run, "refused", nameof(TpmRegistrationStatus.EkCertificateUntrusted));
        AssertNoIdentity(outDir);
    }

    [Fact]
    public async Task Enroll_AnotherVendorsCaConfigured_RefusedAndNothingWritten()
    {
        var workspace = Workspace(tpm.OtherVendor.Certificate.ExportCertificatePem());
        var outDir = PathOf("node-d");

        var run = await EnrollAsync(workspace, "metal-cp-0", "control-plane", outDir);

        AssertOneLine(1, run, "refused: the attestation key of metal-cp-0 was not certified (EkCertificateUntrusted)");
        Assert.False(Directory.Exists(outDir), $"{outDir} was created");
    }

    [Fact]
    public async Task Enroll_NoCaConfiguredNorGiven_OneClearLine()
    {
        var workspace = Workspace(null);
        var outDir = PathOf("node-e");

        var run = await EnrollAsync(workspace, "metal-cp-0", "control-plane", outDir);

        AssertOneLine(1, run, "no TPM vendor is trusted", "attestation.tpmManufacturerCa", "--ek-ca FILE");
        Assert.False(Directory.Exists(outDir));
    }

    [Fact]
    public async Task Enroll_EkCaFileWithoutCertificate_OneClearLine()
    {
        var workspace = Workspace(null);
        var file = PathOf("not-a-ca.pem");
        File.WriteAllText(file, "hello\n");

        var run = await EnrollAsync(workspace, "metal-cp-0", "control-plane", PathOf("node-f"), "--ek-ca", file);

        AssertOneLine(1, run, file);
        Assert.False(Directory.Exists(PathOf("node-f")));
    }

    [Theory]
    [InlineData("Metal_0", "worker")]
    [InlineData("../escape", "worker")]
    [InlineData("", "worker")]
    [InlineData("metal-0", "admin")]
    [InlineData("metal-0", "Worker")]
    public async Task Enroll_InvalidNameOrRole_ExitTwo(string name, string role)
    {
        var workspace = Workspace(tpm.VendorPem);
        var outDir = PathOf("node-g");

        var run = await EnrollAsync(workspace, name, role, outDir);

        Assert.True(run.ExitCode == 2, $"exit {run.ExitCode}: {run.Stderr}");
        Assert.DoesNotContain("   at ", run.Stderr, StringComparison.Ordinal);
        Assert.False(Directory.Exists(outDir));
    }

    [Theory]
    [InlineData("tcp:127.0.0.1:2321")]
    [InlineData("127.0.0.1:2321")]
    [InlineData("swtpm:host=127.0.0.1,port=2321")]
    [InlineData("tpm.sock")]
    [InlineData("unix:tpm.sock")]
    [InlineData("/dev/../tmp/tpm.sock")]
    public async Task Enroll_TcpOrRelativeTpmEndpoint_ExitTwo(string endpoint)
    {
        var workspace = Workspace(tpm.VendorPem);
        var outDir = PathOf("node-h");

        var run = await CliHarness.RunAsync("tpm", "enroll", "metal-0", "--role", "worker", "--out", outDir, "--tpm", endpoint, "-C", workspace);

        AssertOneLine(2, run, "--tpm");
        Assert.False(Directory.Exists(outDir));
    }

    [Fact]
    public async Task Enroll_UnreachableSocket_ExitOne()
    {
        var workspace = Workspace(tpm.VendorPem);
        var socket = PathOf("nobody-listens.sock");

        var run = await CliHarness.RunAsync("tpm", "enroll", "metal-0", "--role", "worker", "--out", PathOf("node-i"), "--tpm", "unix:" + socket, "-C", workspace);

        AssertOneLine(1, run, "cannot reach the TPM at unix:" + socket);
        Assert.False(Directory.Exists(PathOf("node-i")));
    }

    [Fact]
    public async Task Enroll_MissingDevice_ExitOne()
    {
        var workspace = Workspace(tpm.VendorPem);

        var run = await CliHarness.RunAsync("tpm", "enroll", "metal-0", "--role", "worker", "--out", PathOf("node-j"), "--tpm", "/dev/asterism-no-such-tpm", "-C", workspace);

        AssertOneLine(1, run, "cannot reach the TPM at /dev/asterism-no-such-tpm");
        Assert.False(Directory.Exists(PathOf("node-j")));
    }

    [Theory]
    [InlineData("tpm-endorsement-auth")]
    [InlineData("vendor.auth")]
    public async Task Enroll_AuthFileReadableByOthers_RefusedWithChmodHint(string fileName)
    {
        var workspace = Workspace(tpm.VendorPem);
        var file = Path.Combine(Directory.CreateDirectory(PathOf("keys")).FullName, fileName);
        File.WriteAllBytes(file, tpm.Auth);
        File.SetUnixFileMode(file, Private | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

        var run = await EnrollAsync(workspace, "metal-0", "worker", PathOf("node-k"), "--endorsement-auth-file", file);

        AssertOneLine(1, run, file, "group or others", $"chmod 600 '{file}'");
        Assert.False(Directory.Exists(PathOf("node-k")));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(31)]
    [InlineData(33)]
    [InlineData(1 << 20)]
    public async Task Enroll_AuthFileOfWrongLength_Refused(int length)
    {
        var workspace = Workspace(tpm.VendorPem);
        var file = PathOf("short.auth");
        File.WriteAllBytes(file, new byte[length]);
        File.SetUnixFileMode(file, Private);

        var run = await EnrollAsync(workspace, "metal-0", "worker", PathOf("node-l"), "--endorsement-auth-file", file);

        AssertOneLine(1, run, file, "32-byte");
        Assert.False(Directory.Exists(PathOf("node-l")));
    }

    [Fact]
    public async Task Enroll_WrongEndorsementAuth_RefusedClearly()
    {
        var workspace = Workspace(tpm.VendorPem);
        var file = PathOf("wrong.auth");
        var wrong = TpmEndorsementAuth.Generate();
        File.WriteAllBytes(file, wrong);
        File.SetUnixFileMode(file, Private);

        var run = await EnrollAsync(workspace, "metal-0", "worker", PathOf("node-m"), "--endorsement-auth-file", file);

        AssertOneLine(1, run, "endorsement auth", "TPM_RC_BAD_AUTH");
        Assert.DoesNotContain(Convert.ToHexString(wrong), run.Stderr, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(Convert.ToHexString(tpm.Auth), run.Stderr, StringComparison.OrdinalIgnoreCase);
        Assert.False(Directory.Exists(PathOf("node-m")));
    }

    [Fact]
    public async Task Enroll_NoAuthFileForTpmWithAuth_RefusedClearly()
    {
        var workspace = Workspace(tpm.VendorPem);

        var run = await CliHarness.RunAsync("tpm", "enroll", "metal-0", "--role", "worker", "--out", PathOf("node-n"), "--tpm", tpm.Endpoint, "-C", workspace);

        AssertOneLine(1, run, "endorsement auth", "--endorsement-auth-file");
        Assert.False(Directory.Exists(PathOf("node-n")));
    }

    [Fact]
    public async Task Enroll_NoWorkspace_SaysSo()
    {
        var run = await CliHarness.RunAsync("tpm", "enroll", "metal-0", "--role", "worker", "--out", PathOf("node-o"), "--tpm", tpm.Endpoint, "-C", PathOf("nowhere"));

        AssertOneLine(1, run, "does not exist");
    }

    [Fact]
    public async Task Enroll_OutOwnedByAnotherUser_RefusedAndNothingWritten()
    {
        // Another user's directory, as one pre-created in /tmp: it could swap or link whatever root writes there.
        var workspace = Workspace(tpm.VendorPem);
        var outDir = Directory.CreateDirectory(PathOf("foreign-node")).FullName;
        File.SetUnixFileMode(outDir, (UnixFileMode)0b111_111_111);
        await ChownAsync(outDir, "65534");

        var run = await EnrollAsync(workspace, "metal-cp-0", "control-plane", outDir);

        AssertOneLine(1, run, $"--out {outDir} belongs to uid 65534, not to you");
        Assert.Empty(Directory.GetFileSystemEntries(outDir));
        Assert.Equal((UnixFileMode)0b111_111_111, File.GetUnixFileMode(outDir));
    }

    [Fact]
    public async Task Enroll_OutIsSymlinkToAnotherDirectory_RefusedAndNothingWritten()
    {
        var workspace = Workspace(tpm.VendorPem);
        var target = Directory.CreateDirectory(PathOf("attacker-dir")).FullName;
        var outDir = PathOf("linked-node");
        Directory.CreateSymbolicLink(outDir, target);

        var run = await EnrollAsync(workspace, "metal-cp-0", "control-plane", outDir);

        AssertOneLine(1, run, $"--out {outDir} is a symbolic link");
        Assert.Empty(Directory.GetFileSystemEntries(target));
    }

    [Fact]
    public async Task Enroll_OutIsFile_ExitTwo()
    {
        var workspace = Workspace(tpm.VendorPem);
        var outDir = PathOf("a-file");
        File.WriteAllText(outDir, "keep");

        var run = await EnrollAsync(workspace, "metal-cp-0", "control-plane", outDir);

        AssertOneLine(2, run, $"--out {outDir} is not a directory");
        Assert.Equal("keep", File.ReadAllText(outDir));
    }

    [Fact]
    public async Task Enroll_SymlinksPlantedUnderTempNames_NotFollowed()
    {
        // An own directory that was open to others: links planted under the temp names an old writer used must not
        // carry the endorsement auth elsewhere.
        var workspace = Workspace(tpm.VendorPem);
        var outDir = Directory.CreateDirectory(PathOf("planted-node")).FullName;
        var stolen = PathOf("stolen");
        File.CreateSymbolicLink(Path.Combine(outDir, TpmEndorsementAuth.FileName + ".tmp"), stolen);

        var run = await EnrollAsync(workspace, "metal-w-2", "worker", outDir);

        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.False(File.Exists(stolen), "the endorsement auth followed a planted link");
        Assert.Equal(tpm.Auth, TpmEndorsementAuth.Load(outDir));
        Assert.DoesNotContain(Directory.GetFiles(outDir), f => Path.GetFileName(f).Contains(".tmp-", StringComparison.Ordinal));
    }

    private static async Task ChownAsync(string path, string owner)
    {
        using var chown = System.Diagnostics.Process.Start("chown", [owner, path]);
        await chown.WaitForExitAsync();
        Assert.Equal(0, chown.ExitCode);
    }

    private static SortedDictionary<string, (string Content, DateTime Modified)> Snapshot(string dir) =>
        new(Directory.GetFiles(dir).ToDictionary(
            f => Path.GetFileName(f),
            f => (Convert.ToBase64String(File.ReadAllBytes(f)), File.GetLastWriteTimeUtc(f))), StringComparer.Ordinal);
}
