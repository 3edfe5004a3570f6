using System.Security.Cryptography;
using System.Text;

namespace Asterism.Cloud.Tests;

public class MeasuredBootTests
{
    [Fact]
    public void ComputeEvents_BinaryChanges_Pcr4ChangesPcr9Stays()
    {
        var dir = Directory.CreateTempSubdirectory("asterism-mb-").FullName;
        try
        {
            var dll = Path.Combine(dir, "asterism-node.dll");
            File.WriteAllText(dll, "version 1");
            var before = MeasuredBoot.ComputeEvents(["dotnet", dll], ["--x"], "simulated");
            File.WriteAllText(dll, "version 2");
            var after = MeasuredBoot.ComputeEvents(["dotnet", dll], ["--x"], "simulated");

            Assert.Equal([4, 9], before.Select(e => e.Pcr));
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("version 1"))), before[0].Digest);
            Assert.NotEqual(before[0].Digest, after[0].Digest);
            Assert.Equal(before[1], after[1]);
            Assert.NotEqual(MeasuredBoot.ExpectedPcrs(before)[4], MeasuredBoot.ExpectedPcrs(after)[4]);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void BootArgumentsDigest_ArgsOrVariantChange_DigestChanges_Unambiguous()
    {
        var baseline = MeasuredBoot.BootArgumentsDigest("simulated", ["--a", "b"]);
        Assert.Equal(baseline, MeasuredBoot.BootArgumentsDigest("simulated", ["--a", "b"]));
        Assert.NotEqual(baseline, MeasuredBoot.BootArgumentsDigest("tpm", ["--a", "b"]));
        Assert.NotEqual(baseline, MeasuredBoot.BootArgumentsDigest("simulated", ["--a", "c"]));
        Assert.NotEqual(baseline, MeasuredBoot.BootArgumentsDigest("simulated", ["--ab"]));
        Assert.NotEqual(baseline, MeasuredBoot.BootArgumentsDigest("simulated", ["--a", "b", ""]));
        Assert.Throws<ArgumentException>(() => MeasuredBoot.BootArgumentsDigest("simulated", ["a\0b"]));
    }

    [Fact]
    public void ExpectedPcrs_ExtendsFromZero()
    {
        var d1 = new byte[32];
        d1[0] = 1;
        var d2 = new byte[32];
        d2[0] = 2;
        var events = new[]
        {
            new BootEvent { Pcr = 4, Digest = Convert.ToHexStringLower(d1) },
            new BootEvent { Pcr = 4, Digest = Convert.ToHexStringLower(d2) },
            new BootEvent { Pcr = 9, Digest = Convert.ToHexStringLower(d2) },
        };
        var pcrs = MeasuredBoot.ExpectedPcrs(events);
        var pcr4 = SHA256.HashData([.. SHA256.HashData([.. new byte[32], .. d1]), .. d2]);
        Assert.Equal(pcr4, pcrs[4]);
        Assert.Equal(SHA256.HashData([.. new byte[32], .. d2]), pcrs[9]);
        Assert.Equal(2, pcrs.Count);
    }

    [Fact]
    public void NodeBinaryPath_LastDllOrExecutable()
    {
        Assert.Equal("/b/node.dll", MeasuredBoot.NodeBinaryPath(["dotnet", "exec", "/a/x.dll", "/b/node.dll"]));
        Assert.Equal("/opt/asterism-node", MeasuredBoot.NodeBinaryPath(["/opt/asterism-node", "--flag"]));
        Assert.EndsWith("/sh", MeasuredBoot.NodeBinaryPath(["sh"]), StringComparison.Ordinal);
        Assert.Throws<CloudConfigException>(() => MeasuredBoot.NodeBinaryPath(["no-such-command-anywhere"]));
        Assert.Throws<CloudConfigException>(() => MeasuredBoot.ComputeEvents(["/no/such/node.dll"], [], "simulated"));
    }

    [Theory]
    [InlineData("{\"events\":[{\"pcr\":24,\"digest\":\"0000000000000000000000000000000000000000000000000000000000000000\"}]}")]
    [InlineData("{\"events\":[{\"pcr\":4,\"digest\":\"00\"}]}")]
    [InlineData("{\"events\":[{\"pcr\":4,\"digest\":\"zz00000000000000000000000000000000000000000000000000000000000000\"}]}")]
    [InlineData("{\"events\":[null]}")]
    [InlineData("{\"events\":null}")]
    [InlineData("{\"events\":[{\"pcr\":\"four\"}]}")]
    [InlineData("garbage")]
    public void Read_BadFile_CloudConfigException(string content)
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, content);
            Assert.Throws<CloudConfigException>(() => MeasuredBoot.Read(path));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void WriteRead_RoundTrip()
    {
        var path = Path.GetTempFileName();
        try
        {
            var events = MeasuredBoot.ComputeEvents(["/bin/sh"], ["--a"], "simulated");
            MeasuredBoot.Write(path, events);
            Assert.Equal(events, MeasuredBoot.Read(path).Events);
            Assert.Contains("\"description\": \"node binary\"", File.ReadAllText(path), StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
