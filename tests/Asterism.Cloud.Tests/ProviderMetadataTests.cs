using System.Net.Http.Json;
using Asterism.Cloud.Local;
using Asterism.Protocol;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Cloud.Tests;

public class ProviderMetadataTests
{
    [Fact]
    public async Task StartAsync_WritesCloudJson_MetadataAnswersSelfListEndpoint()
    {
        await using var cloud = await TestCloud.StartAsync(controlPlanes: 2, workers: 1);
        var subnet = cloud.Provider!.Subnet;

        var state = System.Text.Json.JsonDocument.Parse(File.ReadAllText(cloud.Workspace.StatePath)).RootElement;
        Assert.Equal(Environment.ProcessId, state.GetProperty("pid").GetInt32());
        Assert.Equal($"http://{subnet.Prefix}.1:8080", state.GetProperty("metadataUrl").GetString());
        Assert.Equal($"{subnet.Prefix}.2", state.GetProperty("loadBalancer").GetString());
        Assert.Equal(subnet.Prefix, state.GetProperty("subnet").GetString());

        using var metadata = cloud.NewMetadataClient();
        var list = await metadata.ListAsync(CancellationToken.None);
        Assert.Equal(
            [
                (cloud.Cp(0), "control-plane", $"{subnet.Prefix}.10", "running"),
                (cloud.Cp(1), "control-plane", $"{subnet.Prefix}.11", "running"),
                (cloud.Worker(0), "worker", $"{subnet.Prefix}.12", "running"),
            ],
            list.Select(i => (i.Name, i.Role, i.Address, i.Power)));
        Assert.All(list, i => Assert.True(Procs.IsAlive(i.Pid!.Value)));

        var self = await metadata.SelfAsync(cloud.Worker(0), CancellationToken.None);
        Assert.Equal(list[2], self);
        Assert.Equal($"{subnet.Prefix}.2", await metadata.LoadBalancerEndpointAsync(CancellationToken.None));
        var unknown = await Assert.ThrowsAsync<MetadataException>(() => metadata.SelfAsync("nobody", CancellationToken.None));
        Assert.Equal(404, unknown.StatusCode);

        using var http = new HttpClient();
        var raw = await http.GetStringAsync(new Uri($"{cloud.Provider.MetadataUrl}/v1/self?name={cloud.Cp(0)}"));
        Assert.Contains("\"role\":\"control-plane\"", raw, StringComparison.Ordinal);
        Assert.Contains("\"power\":\"running\"", raw, StringComparison.Ordinal);

        // The node got the contract's arguments, with the provider's metadata URL.
        var console = cloud.Console(cloud.Cp(1));
        Assert.Contains($"--name {cloud.Cp(1)} --role control-plane --address {subnet.Prefix}.11 --disk {cloud.Workspace.DiskPath(cloud.Cp(1))} --node-dir {cloud.Workspace.NodeDir(cloud.Cp(1))} --metadata http://{subnet.Prefix}.1:8080 --variant simulated", console, StringComparison.Ordinal);
        Assert.True(Directory.Exists(cloud.Workspace.NodeDir(cloud.Cp(1))));
    }

    [Fact]
    public async Task Power_BadInput_400AndNothingChanges()
    {
        await using var cloud = await TestCloud.StartAsync(controlPlanes: 1, workers: 1);
        var before = cloud.Provider!.Instances();
        using var http = new HttpClient { BaseAddress = new Uri(cloud.Provider.MetadataUrl) };
        http.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", ApiCredential.Load(cloud.Workspace.CredentialPath).AuthorizationValue);

        async Task<string> Bad(string json)
        {
            using var response = await http.PostAsync(new Uri("/v1/power", UriKind.Relative), new StringContent(json, System.Text.Encoding.UTF8, "application/json"));
            Assert.Equal(System.Net.HttpStatusCode.BadRequest, response.StatusCode);
            return (await response.Content.ReadFromJsonAsync<ErrorResponse>())!.Error;
        }

        Assert.Contains("nobody", await Bad($"{{\"action\":\"stop\",\"names\":[\"{cloud.Cp(0)}\",\"nobody\"]}}"), StringComparison.Ordinal);
        Assert.Contains("unknown action", await Bad("{\"action\":\"explode\",\"names\":null}"), StringComparison.Ordinal);
        Assert.Contains("unknown action", await Bad("{\"names\":null}"), StringComparison.Ordinal);
        Assert.NotEmpty(await Bad("{\"action\":\"stop\",\"names\":[]}"));
        Assert.NotEmpty(await Bad("{\"action\":\"stop\""));
        Assert.NotEmpty(await Bad("[\"stop\"]"));

        using var client = LocalCloudClient.ForState(cloud.Workspace, new CloudState { MetadataUrl = cloud.Provider.MetadataUrl, Pid = Environment.ProcessId });
        var e = await Assert.ThrowsAsync<MetadataException>(() => client.PowerAsync("crash", [cloud.Worker(0), "ghost"], CancellationToken.None));
        Assert.Equal(400, e.StatusCode);
        Assert.Contains("ghost", e.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentException>(() => cloud.Provider.PowerAsync(PowerAction.Stop, ["ghost"], CancellationToken.None));

        Assert.Equal(before, cloud.Provider.Instances());
        Assert.All(before, i => Assert.True(Procs.IsAlive(i.Pid!.Value)));
    }

    [Fact]
    public async Task StartAsync_NonLoopbackSubnet_RefusedNothingStarted()
    {
        await using var cloud = TestCloud.Create(subnet: "10.20.30");
        var e = await Assert.ThrowsAsync<CloudConfigException>(() => cloud.StartProviderAsync());
        Assert.Contains("loopback", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(cloud.Workspace.StatePath));
        Assert.False(Directory.Exists(cloud.Workspace.InstancesDir));
    }

    [Fact]
    public async Task StartAsync_NodeBinaryMissing_FailsAndStopsEverything()
    {
        await using var cloud = TestCloud.Create(controlPlanes: 1, nodeCommand: ["dotnet", "/no/such/asterism-node.dll"]);
        var e = await Assert.ThrowsAsync<CloudConfigException>(() => cloud.StartProviderAsync());
        Assert.Contains("cannot measure node binary", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(cloud.Workspace.StatePath));
        // The API is gone again: the subnet is free for the next attempt.
        Assert.True(SubnetAllocator.IsFree(CloudSubnet.Parse(cloud.Spec.Subnet)));
    }

    [Fact]
    public async Task StartAsync_MetadataAddressInUse_FailsWithoutStartingInstances()
    {
        await using var cloud = TestCloud.Create(controlPlanes: 1);
        using var squatter = new System.Net.Sockets.TcpListener(CloudSubnet.Parse(cloud.Spec.Subnet).ProviderAddress, Ports.Metadata);
        squatter.Start();
        await Assert.ThrowsAsync<IOException>(() => cloud.StartProviderAsync());
        Assert.False(File.Exists(cloud.Workspace.StatePath));
        Assert.False(File.Exists(cloud.Workspace.ConsoleLogPath(cloud.Cp(0))));
    }
}
