using System.Security.Cryptography;
using Asterism.Attestation;
using Asterism.Attestation.Tpm;

namespace Asterism.Tpm.Tests;

/// <summary>The IPcrBank adapter (in Asterism.Attestation) keeps the contract's semantics on a real swtpm.</summary>
public sealed class TpmPcrBankTests
{
    [Fact]
    public async Task PcrBank_ExtendAndMeasure_MatchContractSemantics()
    {
        await using var swtpm = await TestSwtpm.StartAsync();
        await using var client = await swtpm.ConnectAsync();
        IPcrBank bank = new TpmPcrBank(client);
        var zero = new byte[32];
        var clusterId = RandomNumberGenerator.GetBytes(32);

        Assert.Equal(zero, await bank.ReadAsync(15, CancellationToken.None));
        await bank.MeasureEventAsync(15, clusterId, CancellationToken.None);
        // As CONSTELLATION-FACTS §9.2: PCR15 = SHA256(zero32 ‖ SHA256(clusterID)).
        Assert.Equal(SHA256.HashData([.. zero, .. SHA256.HashData(clusterId)]), await bank.ReadAsync(15, CancellationToken.None));

        var digest = SHA256.HashData("binary"u8);
        await bank.ExtendAsync(11, digest, CancellationToken.None);
        Assert.Equal(SHA256.HashData([.. zero, .. digest]), await bank.ReadAsync(11, CancellationToken.None));
    }
}
