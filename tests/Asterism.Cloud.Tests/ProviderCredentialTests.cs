using System.Net;
using System.Net.Http.Json;
using System.Text;
using Asterism.Tests;

namespace Asterism.Cloud.Tests;

/// <summary>
/// Issue 12 M4/L1: the provider's mutating API needs the workspace's credential, reads stay open and reveal
/// nothing secret, and every file of the workspace is the owner's alone.
/// </summary>
public class ProviderCredentialTests
{
    [Fact]
    public async Task Power_WithoutOrWithWrongCredential_RefusedLoggedAndInstancesKeepRunning()
    {
        await using var cloud = await TestCloud.StartAsync(controlPlanes: 1, workers: 1);
        var before = cloud.Provider!.Instances();
        using var http = new HttpClient { BaseAddress = new Uri(cloud.Provider.MetadataUrl) };
        var crashAll = JsonContent.Create(new { action = "crash", names = (string[]?)null });

        using (var none = await http.PostAsync(new Uri("/v1/power", UriKind.Relative), crashAll))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
            Assert.Equal(ApiAuthorization.MissingMessage, (await none.Content.ReadFromJsonAsync<ErrorResponse>())!.Error);
        }
        using (var wrong = new HttpRequestMessage(HttpMethod.Post, new Uri("/v1/power", UriKind.Relative)) { Content = crashAll })
        {
            wrong.Headers.TryAddWithoutValidation("Authorization", ApiCredential.Generate().AuthorizationValue);
            using var response = await http.SendAsync(wrong);
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
            Assert.Equal(ApiAuthorization.WrongMessage, (await response.Content.ReadFromJsonAsync<ErrorResponse>())!.Error);
        }
        using (var shutdown = await http.PostAsync(new Uri("/v1/shutdown", UriKind.Relative), JsonContent.Create(new { })))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, shutdown.StatusCode);
        }
        // Adding an instance (node add --control-plane) changes the cluster too: refused, and spec.json untouched.
        using (var add = await http.PostAsync(new Uri("/v1/instances", UriKind.Relative), JsonContent.Create(new { role = "control-plane" })))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, add.StatusCode);
        }
        Assert.Equal(0, CloudSpec.Load(cloud.Workspace.SpecPath).AddedControlPlanes);
        // Not only the known routes: any method that is not a read is refused before routing.
        using (var put = await http.PutAsync(new Uri("/v1/power", UriKind.Relative), new StringContent("{}", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, put.StatusCode);
        }

        Assert.Equal(before, cloud.Provider.Instances());
        Assert.All(before, i => Assert.True(Procs.IsAlive(i.Pid!.Value), $"{i.Name} was stopped by an unauthenticated call"));
        Assert.False(cloud.Provider.ShutdownRequested.IsCompleted, "an unauthenticated shutdown was accepted");
        var refusals = cloud.Logs().Where(l => l.StartsWith("Refused API request", StringComparison.Ordinal)).ToList();
        Assert.Equal(5, refusals.Count);
        Assert.Contains(refusals, l => l.Contains("reason=wrong credential", StringComparison.Ordinal) && l.Contains("path=/v1/power", StringComparison.Ordinal));
        Assert.All(refusals, l => Assert.Matches(@"peer=127\.0\.0\.1:\d+ ", l));
        var token = ApiCredential.Load(cloud.Workspace.CredentialPath).Token;
        Assert.DoesNotContain(cloud.Logs(), l => l.Contains(token, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Power_WithWorkspaceCredential_Applied()
    {
        await using var cloud = await TestCloud.StartAsync(controlPlanes: 1);
        var pid = cloud.Info(cloud.Cp(0)).Pid!.Value;
        using var client = LocalCloudClient.ForState(cloud.Workspace, new CloudState { MetadataUrl = cloud.Provider!.MetadataUrl, Pid = Environment.ProcessId });

        var crash = Assert.Single((await client.PowerAsync(PowerAction.Crash, null, CancellationToken.None)).Results);

        Assert.Equal("stopped", crash.Power);
        await Poll.RequireAsync(() => !Procs.IsAlive(pid), Poll.Hang, "the crashed instance to be gone");
    }

    [Fact]
    public async Task Reads_OpenWithoutCredential_RevealNoSecret()
    {
        await using var cloud = await TestCloud.StartAsync(controlPlanes: 1, workers: 1);
        var credential = ApiCredential.Load(cloud.Workspace.CredentialPath);
        var hash = Convert.ToHexStringLower(credential.Hash());
        using var http = new HttpClient { BaseAddress = new Uri(cloud.Provider!.MetadataUrl) };

        foreach (var path in new[] { "/v1/instances", "/v1/endpoint", $"/v1/self?name={cloud.Cp(0)}" })
        {
            using var response = await http.GetAsync(new Uri(path, UriKind.Relative));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var body = await response.Content.ReadAsStringAsync();
            Assert.DoesNotContain(credential.Token, body, StringComparison.Ordinal);
            Assert.DoesNotContain(hash, body, StringComparison.Ordinal);
            Assert.DoesNotContain(cloud.WorkspaceDir, body, StringComparison.Ordinal);
        }
        Assert.DoesNotContain(cloud.Logs(), l => l.StartsWith("Refused", StringComparison.Ordinal));
    }

    [Fact]
    public async Task StartAsync_EmbeddedProvider_EveryFileOwnerOnlyAndNodesGetTheCredentialHash()
    {
        await using var cloud = await TestCloud.StartAsync(controlPlanes: 1, workers: 1);
        var credential = ApiCredential.Load(cloud.Workspace.CredentialPath);

        Assert.Empty(FileModes.OpenToOthers(cloud.WorkspaceDir));
        Assert.Equal(OwnerOnly.DirectoryMode, File.GetUnixFileMode(cloud.Workspace.CloudDir));
        Assert.Equal(OwnerOnly.FileMode, File.GetUnixFileMode(cloud.Workspace.CredentialPath));
        foreach (var name in new[] { cloud.Cp(0), cloud.Worker(0) })
        {
            Assert.Equal(OwnerOnly.DirectoryMode, File.GetUnixFileMode(cloud.Workspace.InstanceDir(name)));
            Assert.Equal(OwnerOnly.FileMode, File.GetUnixFileMode(cloud.Workspace.ConsoleLogPath(name)));
            var verifier = ApiCredentialVerifier.LoadHashFile(cloud.Workspace.CredentialHashPath(name), out var problem);
            Assert.Null(problem);
            Assert.Equal(CredentialCheck.Valid, verifier.Check(credential.AuthorizationValue));
        }
    }

    [Fact]
    public async Task StartAsync_WideDirectoriesFromBefore_Tightened()
    {
        await using var cloud = TestCloud.Create(controlPlanes: 1);
        const UnixFileMode wide = OwnerOnly.DirectoryMode | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;
        Directory.CreateDirectory(cloud.Workspace.NodeDir(cloud.Cp(0)));
        foreach (var dir in new[] { cloud.Workspace.AsterismDir, cloud.Workspace.CloudDir, cloud.Workspace.InstancesDir, cloud.Workspace.InstanceDir(cloud.Cp(0)), cloud.Workspace.NodeDir(cloud.Cp(0)) })
        {
            File.SetUnixFileMode(dir, wide);
        }
        File.WriteAllText(cloud.Workspace.ConsoleLogPath(cloud.Cp(0)), "old boot\n");
        File.SetUnixFileMode(cloud.Workspace.ConsoleLogPath(cloud.Cp(0)), OwnerOnly.FileMode | UnixFileMode.OtherRead);

        await cloud.StartProviderAsync();

        Assert.Empty(FileModes.OpenToOthers(cloud.WorkspaceDir));
        Assert.StartsWith("old boot\n", cloud.Console(cloud.Cp(0)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task StartProviderAsync_DetachedHost_Umask077ReachesInstances()
    {
        // The real asterism-cloud sets umask 077 first thing: a file its instance creates (as a node creates its
        // disk image) is 0600 although this test process runs with a wider umask.
        await using var cloud = TestCloud.Create(controlPlanes: 1, nodeArgs: ["--write-disk"]);
        var pids = new List<int>();
        try
        {
            using var client = await LocalCloudClient.StartProviderAsync(cloud.WorkspaceDir);
            pids.Add(client.State.Pid);
            pids.AddRange((await client.ListAsync(CancellationToken.None)).Select(i => i.Pid!.Value));
            await cloud.WaitForConsoleAsync(cloud.Cp(0), "listening", 1);

            Assert.Equal(OwnerOnly.FileMode, File.GetUnixFileMode(cloud.Workspace.DiskPath(cloud.Cp(0))));
            Assert.Equal(OwnerOnly.FileMode, File.GetUnixFileMode(cloud.Workspace.LogPath));
            Assert.Empty(FileModes.OpenToOthers(cloud.WorkspaceDir));
            await client.ShutdownAsync(TimeSpan.FromSeconds(20), CancellationToken.None);
        }
        finally
        {
            Procs.KillSurvivors(pids);
        }
    }
}

/// <summary>Walks a tree and lists every entry that group or others have any permission on.</summary>
internal static class FileModes
{
    public static IReadOnlyList<string> OpenToOthers(string root)
    {
        var open = new List<string>();
        var entries = new[] { root }.Concat(Directory.EnumerateFileSystemEntries(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }));
        foreach (var path in entries)
        {
            var info = new FileInfo(path);
            if (info.LinkTarget is not null)
            {
                continue;
            }
            var mode = File.GetUnixFileMode(path);
            if ((mode & OwnerOnly.GroupOrOther) != 0)
            {
                open.Add($"{path} {Convert.ToString((int)mode, 8)}");
            }
        }
        return open;
    }
}
