using System.Net;
using System.Net.Http.Json;
using System.Text;
using Asterism.Cloud;
using Asterism.Crypto;
using Asterism.EndToEnd.Tests.Infrastructure;
using Asterism.EndToEnd.Tests.Operator;
using Asterism.Protocol;

namespace Asterism.EndToEnd.Tests.Security;

/// <summary>
/// Issue 12 M4 and L1–L2 on a real local cluster (1 control plane, simulated): another local user reads nothing of
/// the workspace, and nobody without the workspace's credential powers instances off or touches workload data.
/// </summary>
public sealed class LocalSurfaceAttackTests(SmallSimulatedCluster cluster) : IClassFixture<SmallSimulatedCluster>
{
    private static readonly HttpClient Http = new(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.Zero }) { Timeout = TimeSpan.FromSeconds(15) };

    [RootFact]
    [Step(1)]
    public async Task WorkspaceFiles_AnotherUser_ReadsNothing()
    {
        await cluster.EnsureAllBootedAsync();
        var node = cluster.Instances[0];
        Assert.Empty(FileModes.OpenToOthers(cluster.Workspace));
        string[] secrets =
        [
            cluster.Files.DiskPath(node.Name),
            cluster.Files.ConsoleLogPath(node.Name),
            cluster.MasterSecretPath,
            cluster.Files.CredentialPath,
            cluster.Files.CredentialHashPath(node.Name),
            cluster.Files.BootMeasurementsPath(node.Name),
            cluster.Files.LogPath,
            Path.Combine(cluster.Workspace, Asterism.Config.ClusterConfig.FileName),
            // The mounted state filesystem (issue 14): node state, the control plane's master secret, and the FUSE
            // block file that serves the decrypted payload (no allow_other: the kernel refuses other users).
            Path.Combine(cluster.Files.NodeStateDir(node.Name), "asterism", "node_state.json"),
            Path.Combine(cluster.Files.NodeStateDir(node.Name), "asterism", "master_secret.json"),
            Path.Combine(cluster.Files.NodeRuntimeDir(node.Name), "block", "disk"),
        ];
        Assert.All(secrets, p => Assert.True(File.Exists(p), $"{p} missing"));

        // The operator may keep the workspace in any directory, even a world-traversable one: the protection must
        // come from what Asterism creates. The canary proves the attacker really can read what is open to it.
        File.SetUnixFileMode(cluster.Workspace, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
            | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        var canary = Path.Combine(cluster.Workspace, "canary.txt");
        // The FUSE block mount's root refuses chmod (its mode is fixed at 0700): it stays closed in both rounds.
        var fuseRoot = Path.Combine(cluster.Files.NodeRuntimeDir(node.Name), "block");
        var directories = FileModes.Directories(cluster.Workspace).Skip(1).Where(d => d != fuseRoot && !d.StartsWith(fuseRoot + "/", StringComparison.Ordinal)).ToList();
        try
        {
            await File.WriteAllTextAsync(canary, "world-readable on purpose\n");
            File.SetUnixFileMode(canary, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            var control = await OtherUser.CatAsync(canary);
            Assert.True(control.ExitCode == 0 && control.Stdout.Contains("on purpose", StringComparison.Ordinal), "the attacker setup does not work: " + control);

            await AssertUnreadableAsync(secrets, "as created");
            var listing = await OtherUser.RunAsync(["ls", cluster.Files.CloudDir]);
            Assert.True(listing.ExitCode != 0, "nobody listed the cloud directory: " + listing);

            // The state directory (the mounted ext4 root, 0700) cannot be listed even with every directory above it
            // opened: only the node's user enters it.
            foreach (var dir in directories.Where(d => !d.StartsWith(cluster.Files.NodeStateDir(node.Name), StringComparison.Ordinal)))
            {
                File.SetUnixFileMode(dir, OwnerOnly.DirectoryMode | UnixFileMode.OtherExecute);
            }
            var state = await OtherUser.RunAsync(["ls", cluster.Files.NodeStateDir(node.Name)]);
            Assert.True(state.ExitCode != 0 && state.Stderr.Contains("Permission denied", StringComparison.Ordinal), "nobody listed the state directory: " + state);
            Assert.Equal(OwnerOnly.DirectoryMode, File.GetUnixFileMode(cluster.Files.NodeStateDir(node.Name)));
            await AssertUnreadableAsync(secrets, "state directory 0700, everything above it traversable");

            // Defence in depth: even with every directory opened (an operator's careless chmod), each file's own
            // 0600 keeps it unreadable.
            foreach (var dir in directories)
            {
                File.SetUnixFileMode(dir, OwnerOnly.DirectoryMode | UnixFileMode.OtherExecute);
            }
            await AssertUnreadableAsync(secrets, "with traversable directories");
        }
        finally
        {
            foreach (var dir in directories)
            {
                File.SetUnixFileMode(dir, OwnerOnly.DirectoryMode);
            }
            File.Delete(canary);
            File.SetUnixFileMode(cluster.Workspace, OwnerOnly.DirectoryMode);
        }
    }

    [Fact]
    [Step(2)]
    public async Task PowerApi_WithoutCredential_RefusedAndNodeKeepsRunning()
    {
        await cluster.EnsureAllBootedAsync();
        var before = Assert.Single(await cluster.ListAsync());
        using var cloud = LocalCloudClient.Connect(cluster.Workspace);
        var api = cloud.BaseUrl;

        using (var none = await Http.PostAsJsonAsync(new Uri(api, "v1/power"), new { action = "crash", names = (string[]?)null }))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
        }
        using (var wrong = new HttpRequestMessage(HttpMethod.Post, new Uri(api, "v1/power")) { Content = JsonContent.Create(new { action = "stop", names = new[] { before.Name } }) })
        {
            wrong.Headers.TryAddWithoutValidation("Authorization", ApiCredential.Generate().AuthorizationValue);
            using var response = await Http.SendAsync(wrong);
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        }
        using (var shutdown = await Http.PostAsJsonAsync(new Uri(api, "v1/shutdown"), new { }))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, shutdown.StatusCode);
        }
        if (OtherUser.CanSwitch)
        {
            // The same call from another local account (what the attacker is).
            var curl = await OtherUser.RunAsync(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "Content-Type: application/json",
                "-d", "{\"action\":\"crash\"}", new Uri(api, "v1/power").ToString()]);
            Assert.True(curl.Stdout == "401", curl.ToString());
        }

        var after = Assert.Single(await cluster.ListAsync());
        Assert.Equal((before.Pid, before.Boots, "running"), (after.Pid, after.Boots, after.Power));
        Assert.True(Processes.IsAlive(before.Pid!.Value));
        Assert.NotNull(LocalCloudClient.TryConnect(cluster.Workspace));
        Assert.Equal(BootPhases.Booted, (await cluster.StatusAsync(before))?.Phase);
        var log = await File.ReadAllTextAsync(cluster.Files.LogPath);
        // cloud.log is the house JSON envelope: the fixed text, then the request's fields.
        var refusals = log.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Where(l => l.StartsWith('{'))
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement)
            .Where(e => e.TryGetProperty("msg", out var msg) && msg.GetString() == "Refused API request without a valid credential")
            .ToList();
        Assert.Contains(refusals, e => Field(e, "api") == "cloud" && Field(e, "method") == "POST" && Field(e, "path") == "/v1/shutdown"
            && Field(e, "peer")!.StartsWith("127.", StringComparison.Ordinal));
        Assert.Contains(refusals, e => Field(e, "reason") == "wrong credential");
        Assert.DoesNotContain(cloud.Credential.Token, log, StringComparison.Ordinal);
    }

    [Fact]
    [Step(3)]
    public async Task WorkloadApi_WithoutCredential_ReadAndWriteRefused()
    {
        await cluster.EnsureAllBootedAsync();
        var node = cluster.Instances[0];
        await cluster.PutAsync(node, "guarded", "the operator's value");
        var wrong = ApiCredential.Generate().AuthorizationValue;

        foreach (var (method, path) in new[] { (HttpMethod.Get, "/data/guarded"), (HttpMethod.Get, "/data"), (HttpMethod.Get, "/boot-count"), (HttpMethod.Put, "/data/guarded") })
        {
            using var none = await ClusterFixture.WorkloadAsync(node, method, path, "", method == HttpMethod.Put ? new StringContent("the attacker's value") : null);
            Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
            Assert.DoesNotContain("operator", await none.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            using var forged = await ClusterFixture.WorkloadAsync(node, method, path, wrong, method == HttpMethod.Put ? new StringContent("the attacker's value") : null);
            Assert.Equal(HttpStatusCode.Forbidden, forged.StatusCode);
        }

        Assert.Equal("the operator's value", await cluster.GetAsync(node, "guarded"));
        var console = await File.ReadAllTextAsync(cluster.Files.ConsoleLogPath(node.Name));
        Assert.Contains("Refused API request without a valid credential", console, StringComparison.Ordinal);
        Assert.Contains("wrong credential", console, StringComparison.Ordinal);
    }

    [Fact]
    [Step(4)]
    public async Task BootStatus_Unauthenticated_RevealsNoSecret()
    {
        await cluster.EnsureAllBootedAsync();
        var node = cluster.Instances[0];
        var status = await cluster.StatusAsync(node);
        Assert.NotNull(status);
        Assert.Equal(BootPhases.Booted, status.Phase);

        var text = status.ToString();
        var credential = cluster.Credential;
        Assert.DoesNotContain(credential.Token, text, StringComparison.Ordinal);
        Assert.DoesNotContain(Convert.ToHexStringLower(credential.Hash()), text, StringComparison.Ordinal);
        using var master = cluster.LoadMasterSecret();
        foreach (var secret in KeyForms.ClusterSecrets(master, [cluster.DiskUuid(node)]))
        {
            foreach (var (form, value) in KeyForms.Forms(secret.Bytes))
            {
                Assert.False(text.Contains(value, StringComparison.Ordinal), $"{secret.Label} ({form}) in the boot status");
            }
        }
    }

    [Fact]
    [Step(5)]
    public async Task Recover_MasterSecretReadableByOthers_RefusedNamingTheChmod()
    {
        var copy = Path.Combine(cluster.Workspace, "shared-mastersecret.json");
        File.Copy(cluster.MasterSecretPath, copy);
        File.SetUnixFileMode(copy, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        try
        {
            var result = await cluster.Cli.RunAsync("recover", "--master-secret", copy);

            Assert.True(result.ExitCode == 1, result.ToString());
            Assert.Contains($"run: chmod 600 '{copy}'", result.Stderr, StringComparison.Ordinal);
            Assert.Throws<MasterSecretException>(() => MasterSecret.Load(copy));
        }
        finally
        {
            File.Delete(copy);
        }
    }

    private static async Task AssertUnreadableAsync(IEnumerable<string> paths, string when)
    {
        foreach (var path in paths)
        {
            var read = await OtherUser.CatAsync(path);
            Assert.True(read.ExitCode != 0 && read.Stdout.Length == 0, $"{OtherUser.User} read {path} ({when}): {read}");
            Assert.Contains("Permission denied", read.Stderr, StringComparison.Ordinal);
        }
    }

    private static string? Field(System.Text.Json.JsonElement line, string name) =>
        line.TryGetProperty(name, out var value) ? value.GetString() : null;
}
