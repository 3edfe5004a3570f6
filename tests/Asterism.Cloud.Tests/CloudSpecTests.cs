namespace Asterism.Cloud.Tests;

public class CloudSpecTests
{
    private static CloudSpec Valid => new()
    {
        ClusterName = "demo",
        Subnet = "127.70.1",
        ControlPlanes = 2,
        Workers = 1,
        NodeCommand = ["dotnet", "/x/asterism-node.dll"],
        NodeArgs = ["--rejoin-interval", "2s"],
    };

    [Fact]
    public void PlanInstances_ControlPlanesThenWorkers_FromDotTen()
    {
        var plans = Valid.PlanInstances();
        Assert.Equal(
            [
                new InstancePlan("demo-control-plane-0", InstanceRole.ControlPlane, "127.70.1.10"),
                new InstancePlan("demo-control-plane-1", InstanceRole.ControlPlane, "127.70.1.11"),
                new InstancePlan("demo-worker-0", InstanceRole.Worker, "127.70.1.12"),
            ],
            plans);
    }

    [Fact]
    public void PlanInstances_AddedControlPlanes_AfterWorkers_NoExistingInstanceMoves()
    {
        var plans = (Valid with { AddedControlPlanes = 2 }).PlanInstances();
        Assert.Equal(Valid.PlanInstances(), plans.Take(3));
        Assert.Equal(
            [
                new InstancePlan("demo-control-plane-2", InstanceRole.ControlPlane, "127.70.1.13"),
                new InstancePlan("demo-control-plane-3", InstanceRole.ControlPlane, "127.70.1.14"),
            ],
            plans.Skip(3));
        Assert.Contains((Valid with { AddedControlPlanes = -1 }).Validate(), e => e.Contains("addedControlPlanes", StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_BadFields_ListsEachError()
    {
        var spec = Valid with { Version = 2, ClusterName = "Bad_Name", Subnet = "10.1.2", Variant = "sev", ControlPlanes = 0, Workers = -1, NodeCommand = [] };
        var errors = spec.Validate();
        Assert.Equal(7, errors.Count);
        Assert.Contains(errors, e => e.Contains("loopback", StringComparison.Ordinal));
        Assert.Throws<CloudConfigException>(() => spec.Save(Path.Combine(Path.GetTempPath(), "never-written.json")));
    }

    [Theory]
    [InlineData("dotnet", "relative/asterism-node.dll")]
    [InlineData("./asterism-node", "--x")]
    public void Validate_RelativeNodePath_Refused(string a, string b)
    {
        Assert.Contains((Valid with { NodeCommand = [a, b] }).Validate(), e => e.Contains("absolute", StringComparison.Ordinal));
    }

    [Fact]
    public void SaveLoad_RoundTrip_SameSpec()
    {
        var dir = Directory.CreateTempSubdirectory("asterism-spec-").FullName;
        try
        {
            var path = Path.Combine(dir, "spec.json");
            Valid.Save(path);
            var loaded = CloudSpec.Load(path);
            Assert.Equal(Valid.NodeArgs, loaded.NodeArgs);
            Assert.Equal(Valid with { NodeArgs = loaded.NodeArgs, NodeCommand = loaded.NodeCommand }, loaded);
            Assert.Contains("\"clusterName\": \"demo\"", File.ReadAllText(path), StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("{")]
    [InlineData("null")]
    [InlineData("[1,2]")]
    [InlineData("{\"controlPlanes\":\"three\"}")]
    [InlineData("{\"version\":1,\"clusterName\":\"a\",\"subnet\":\"127.1.1\",\"variant\":\"simulated\",\"controlPlanes\":1,\"workers\":0,\"nodeCommand\":[]}")]
    public void Load_BadFile_CloudConfigException(string content)
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, content);
            Assert.Throws<CloudConfigException>(() => CloudSpec.Load(path));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Load_Oversized_CloudConfigException()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "{\"clusterName\":\"" + new string('a', 300_000) + "\"}");
            var e = Assert.Throws<CloudConfigException>(() => CloudSpec.Load(path));
            Assert.Contains("larger than", e.Message, StringComparison.Ordinal);
            Assert.Throws<CloudConfigException>(() => CloudSpec.Load(path + ".missing"));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
