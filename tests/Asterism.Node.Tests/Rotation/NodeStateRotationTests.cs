using System.Text;
using System.Text.Json.Nodes;
using Asterism.Attestation;
using Asterism.Crypto;
using Asterism.JoinService;
using Asterism.Node.State;
using Asterism.Node.Tests.Fakes;
using Asterism.Node.Unlock;

namespace Asterism.Node.Tests.Rotation;

/// <summary>
/// The node state's rotation fields (bounded parsing, defaults for old files), the key race's check against the cluster
/// ID, keyCheck and previousKeyCheck, and a control plane's secret files across a promotion cut short at each write.
/// </summary>
public sealed class NodeStateRotationTests : IDisposable
{
    private readonly TestDisk _disk = TestDisk.CreateInitialized();
    private readonly NodeStateDirectory _directory;

    public NodeStateRotationTests() => _directory = new NodeStateDirectory(_disk.StateRoot, null, "directory");

    public void Dispose() => _disk.Dispose();

    [Fact]
    public void Read_StateFromBeforeRotation_Generation1CheckIsTheClusterId()
    {
        var json = JsonNode.Parse(File.ReadAllBytes(_directory.PathOf(NodeStateDirectory.NodeStateFile)))!.AsObject();
        json.Remove("keyGeneration");
        json.Remove("keyCheck");
        _directory.Write(NodeStateDirectory.NodeStateFile, Encoding.UTF8.GetBytes(json.ToJsonString()));

        var state = NodeState.Read(_directory);

        Assert.Equal(1, state.KeyGeneration);
        Assert.Equal(state.ClusterId, state.EffectiveKeyCheck);
        Assert.Null(state.PreviousKeyCheck);
    }

    [Fact]
    public void WriteTo_Generation2_RoundTripsAndKeepsTheOldCheckAsPrevious()
    {
        var state = NodeState.Read(_directory);
        var check = new byte[32];
        check[0] = 7;

        state.WithKeyGeneration(2, check).WriteTo(_directory);
        var read = NodeState.Read(_directory);
        var again = read.WithKeyGeneration(2, check);

        Assert.Equal(2, read.KeyGeneration);
        Assert.Equal(check, read.KeyCheck);
        Assert.Equal(state.ClusterId, read.PreviousKeyCheck);
        Assert.Equal(state.ClusterId, read.ClusterId);
        // A rerun after a crash names the same generation: the previous check stays generation 1's.
        Assert.Equal(state.ClusterId, again.PreviousKeyCheck);
    }

    [Theory]
    [InlineData("keyGeneration", "0")]
    [InlineData("keyGeneration", "1000001")]
    [InlineData("keyGeneration", "\"2\"")]
    [InlineData("keyCheck", "\"abcd\"")]
    [InlineData("keyCheck", "\"zz00000000000000000000000000000000000000000000000000000000000000\"")]
    [InlineData("previousKeyCheck", "\"00\"")]
    [InlineData("previousKeyCheck", "17")]
    public void Read_MalformedRotationField_Refused(string field, string value)
    {
        var json = JsonNode.Parse(File.ReadAllBytes(_directory.PathOf(NodeStateDirectory.NodeStateFile)))!.AsObject();
        json[field] = JsonNode.Parse(value);
        _directory.Write(NodeStateDirectory.NodeStateFile, Encoding.UTF8.GetBytes(json.ToJsonString()));

        Assert.Throws<InvalidDataException>(() => NodeState.Read(_directory));
    }

    [Fact]
    public async Task KeyRace_MeasurementSecretOfKeyCheckOrPreviousCheck_Accepted_ForeignRefused()
    {
        using var gen2 = MasterSecret.Generate();
        using var gen3 = MasterSecret.Generate();
        using var foreign = MasterSecret.Generate();
        NodeState.Read(_directory).WithKeyGeneration(2, KeyDerivation.DeriveKeyCheck(gen2, _disk.MeasurementSalt))
            .WithKeyGeneration(3, KeyDerivation.DeriveKeyCheck(gen3, _disk.MeasurementSalt)).WriteTo(_directory);

        // The disk key opens keyslot 0 in every offer (generation 1's, the disk was not moved): only the check differs.
        Assert.Equal(KeyVerdict.Accepted, await OfferAsync(gen3));
        Assert.Equal(KeyVerdict.Accepted, await OfferAsync(gen2));
        Assert.Equal(KeyVerdict.Accepted, await OfferAsync(_disk.Master));
        Assert.Equal(KeyVerdict.MeasurementSecretRejected, await OfferAsync(foreign));
    }

    [Fact]
    public void ClusterSecrets_Generation2AfterJoin_ReadBackWithGenerationAndClusterMeasurementSecret()
    {
        using var gen1Secret = KeyDerivation.DeriveMeasurementSecret(_disk.Master);
        using (var secrets = new ClusterSecrets(MasterSecret.Generate(), 2, SecretBytes.CopyOf(gen1Secret.Span), _disk.MeasurementSalt, Policy()))
        {
            ClusterSecretFiles.Write(_directory, secrets);
        }

        using var read = ClusterSecretFiles.Read(_directory, NodeState.Read(_directory));

        Assert.Equal(2, read.Generation);
        Assert.Equal(gen1Secret.ToArray(), read.ClusterMeasurementSecret.ToArray());
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(_directory.PathOf(ClusterSecretFiles.ClusterMeasurementSecretFile)));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Promotion_CutAfterEachWrite_ReadFinishesIt(int writesDone)
    {
        using var next = MasterSecret.Generate();
        using (var secrets = new ClusterSecrets(MasterSecret.FromBytes(_disk.Master.Key, _disk.Master.Salt), _disk.MeasurementSalt, Policy()))
        {
            ClusterSecretFiles.Write(_directory, secrets);
            ClusterSecretFiles.StoreNext(_directory, secrets, next, 2);
        }
        // The promotion's three writes, cut after `writesDone` of them.
        if (writesDone >= 1)
        {
            _directory.Write(NodeStateDirectory.MasterSecretFile, next.ToJson());
        }
        if (writesDone >= 2)
        {
            _directory.Write(ClusterSecretFiles.GenerationFile, "2"u8);
        }
        if (writesDone >= 3)
        {
            _directory.Delete(ClusterSecretFiles.NextFile(2));
        }

        using var read = ClusterSecretFiles.Read(_directory, NodeState.Read(_directory));

        if (writesDone == 0)
        {
            Assert.Equal((1, 2), (read.Generation, read.NextGeneration));
            return;
        }
        Assert.Equal((2, 0), (read.Generation, read.NextGeneration));
        using var current = read.ForGeneration(2)!;
        Assert.Equal(next.Key.ToArray(), current.Key.ToArray());
        using var gen1Secret = KeyDerivation.DeriveMeasurementSecret(_disk.Master);
        Assert.Equal(gen1Secret.ToArray(), read.ClusterMeasurementSecret.ToArray());
        Assert.False(File.Exists(_directory.PathOf(ClusterSecretFiles.NextFile(2))));
        Assert.Equal("2", File.ReadAllText(_directory.PathOf(ClusterSecretFiles.GenerationFile)));
    }

    [Fact]
    public void Read_NextSecretSkippingAGeneration_Refused()
    {
        using (var secrets = new ClusterSecrets(MasterSecret.FromBytes(_disk.Master.Key, _disk.Master.Salt), _disk.MeasurementSalt, Policy()))
        {
            ClusterSecretFiles.Write(_directory, secrets);
        }
        using var stray = MasterSecret.Generate();
        _directory.Write(ClusterSecretFiles.NextFile(3), stray.ToJson());

        Assert.Throws<InvalidDataException>(() => ClusterSecretFiles.Read(_directory, NodeState.Read(_directory)));
    }

    [Fact]
    public void Read_RotatedSecretWithoutClusterMeasurementSecret_Refused()
    {
        using (var secrets = new ClusterSecrets(MasterSecret.FromBytes(_disk.Master.Key, _disk.Master.Salt), _disk.MeasurementSalt, Policy()))
        {
            ClusterSecretFiles.Write(_directory, secrets);
        }
        _directory.Write(ClusterSecretFiles.GenerationFile, "2"u8);
        _directory.Delete(ClusterSecretFiles.ClusterMeasurementSecretFile);

        Assert.Throws<InvalidDataException>(() => ClusterSecretFiles.Read(_directory, NodeState.Read(_directory)));
    }

    private async Task<KeyVerdict> OfferAsync(MasterSecret measurementFrom)
    {
        var race = new KeyRace(_disk.Volume);
        var verdict = await race.OfferAsync(new ReceivedKeys(KeyDerivation.DeriveDiskKey(_disk.Master, _disk.Uuid), KeyDerivation.DeriveMeasurementSecret(measurementFrom), "test"), default);
        if (race.IsDecided)
        {
            var win = await race.Winner;
            win.Keys.Dispose();
            await win.Directory.DisposeAsync();
        }
        return verdict;
    }

    private static AttestationPolicy Policy() => new() { Variant = AttestationVariant.Simulated, Measurements = Measurements.Empty, TrustAnyKey = true };
}
