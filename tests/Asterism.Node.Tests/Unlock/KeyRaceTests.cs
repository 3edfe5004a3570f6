using Asterism.Node.Tests.Fakes;
using Asterism.Node.Unlock;
using Grpc.Core;

namespace Asterism.Node.Tests.Unlock;

public sealed class KeyRaceTests
{
    [Fact]
    public async Task OfferAsync_RightKeys_AcceptedAndWinnerHasNodeState()
    {
        using var disk = TestDisk.CreateInitialized();
        var race = new KeyRace(disk.Volume);

        Assert.Equal(KeyVerdict.Accepted, await race.OfferAsync(disk.RightKeys("rejoin"), CancellationToken.None));

        Assert.True(race.IsDecided);
        var (keys, state, directory) = await race.Winner;
        Assert.Equal("rejoin", keys.Source);
        Assert.Equal(disk.MeasurementSalt, state.MeasurementSalt);
        Assert.Equal(disk.StateRoot, directory.Root);
        Assert.Equal(1, disk.Volume.Open);
    }

    [Fact]
    public async Task OfferAsync_AnotherClustersKey_DiskKeyRejected_DiskUntouchedAndStillWaiting()
    {
        using var disk = TestDisk.CreateInitialized();
        var race = new KeyRace(disk.Volume);
        var before = disk.ImageHash();

        Assert.Equal(KeyVerdict.DiskKeyRejected, await race.OfferAsync(TestDisk.ForeignKeys(disk.Uuid), CancellationToken.None));

        Assert.False(race.IsDecided);
        Assert.Equal(0, disk.Volume.Opened);
        Assert.Equal(before, disk.ImageHash());
        Assert.Equal(KeyVerdict.Accepted, await race.OfferAsync(disk.RightKeys(), CancellationToken.None));
    }

    [Fact]
    public async Task OfferAsync_RightDiskKeyForeignMeasurementSecret_Refused()
    {
        // An attacker who learnt one disk key but not the cluster's measurement secret must not make the node boot
        // into a cluster ID it cannot prove.
        using var disk = TestDisk.CreateInitialized();
        var race = new KeyRace(disk.Volume);

        Assert.Equal(KeyVerdict.MeasurementSecretRejected, await race.OfferAsync(disk.RightDiskKeyForeignSecret(), CancellationToken.None));

        Assert.False(race.IsDecided);
        // The key opened the disk, so the state was mounted to read the cluster ID; the refusal released it again.
        Assert.Equal((1, 0), (disk.Volume.Opened, disk.Volume.Open));
        Assert.Equal(KeyVerdict.Accepted, await race.OfferAsync(disk.RightKeys(), CancellationToken.None));
    }

    [Fact]
    public async Task OfferAsync_AfterAWinner_AlreadyRecovered_AndTheFirstWinnerStays()
    {
        using var disk = TestDisk.CreateInitialized();
        var race = new KeyRace(disk.Volume);
        await race.OfferAsync(disk.RightKeys("recovery"), CancellationToken.None);

        var late = disk.RightKeys("rejoin");
        Assert.Equal(KeyVerdict.AlreadyRecovered, await race.OfferAsync(late, CancellationToken.None));

        Assert.Equal("recovery", (await race.Winner).Keys.Source);
        // A refused offer is disposed by the race: its key bytes are gone.
        Assert.Throws<ObjectDisposedException>(() => late.DiskKey.Span.Length);
    }

    [Fact]
    public async Task OfferAsync_ManyConcurrentRightOffers_ExactlyOneWins()
    {
        using var disk = TestDisk.CreateInitialized();
        var race = new KeyRace(disk.Volume);

        var verdicts = await Task.WhenAll(Enumerable.Range(0, 8).Select(i =>
            Task.Run(() => race.OfferAsync(disk.RightKeys(i % 2 == 0 ? "recovery" : "rejoin"), CancellationToken.None))));

        Assert.Single(verdicts, v => v == KeyVerdict.Accepted);
        Assert.Equal(7, verdicts.Count(v => v == KeyVerdict.AlreadyRecovered));
        Assert.Equal((1, 1), (disk.Volume.Opened, disk.Volume.Open));
    }

    [Fact]
    public async Task OfferAsync_RightKeyButNoNodeStateFile_StoreUnreadable_Released()
    {
        using var disk = TestDisk.CreateInitialized();
        File.Delete(Path.Combine(disk.StateRoot, Asterism.Node.State.NodeStateDirectory.NodeStateFile));
        var race = new KeyRace(disk.Volume);

        Assert.Equal(KeyVerdict.StoreUnreadable, await race.OfferAsync(disk.RightKeys(), CancellationToken.None));

        Assert.False(race.IsDecided);
        Assert.Equal((1, 0), (disk.Volume.Opened, disk.Volume.Open));
    }

    [Theory]
    [InlineData(KeyVerdict.AlreadyRecovered, StatusCode.Unavailable, "node already recovered")]
    [InlineData(KeyVerdict.DiskKeyRejected, StatusCode.FailedPrecondition, "state disk key rejected")]
    [InlineData(KeyVerdict.MeasurementSecretRejected, StatusCode.FailedPrecondition, "measurement secret rejected")]
    [InlineData(KeyVerdict.StoreUnreadable, StatusCode.FailedPrecondition, "state disk unusable")]
    [InlineData(KeyVerdict.Accepted, StatusCode.OK, "")]
    public void ToStatus_EachVerdict_OneCodeAndGenericDetail(KeyVerdict verdict, StatusCode code, string detail)
    {
        // The CLI reads these codes (FailedPrecondition = wrong key, Unavailable = nothing to do); the texts are what
        // operators see and docs/recovery.md quotes.
        Assert.Equal((code, detail), (verdict.ToStatus().StatusCode, verdict.ToStatus().Detail));
    }
}
