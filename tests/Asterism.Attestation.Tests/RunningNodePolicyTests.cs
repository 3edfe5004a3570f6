using Asterism.Attestation.Simulated;

namespace Asterism.Attestation.Tests;

/// <summary>
/// The policy a running node's rotation call is judged by: PCR 15 must be this cluster's cluster-ID value, so a node
/// with PCR 15 = 0 (no keys in this boot) or one that measured another cluster's ID is refused, and the key-release
/// policy keeps requiring zero.
/// </summary>
public class RunningNodePolicyTests
{
    private static readonly byte[] ClusterId = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();

    private static AttestationPolicy Base() => new()
    {
        Variant = AttestationVariant.Simulated,
        Measurements = new Measurements().With(4, new Measurement(Enumerable.Repeat((byte)4, 32).ToArray())),
        TrustAnyKey = true,
    };

    private static Dictionary<int, byte[]> Pcrs(byte[] pcr15) => new() { [4] = Enumerable.Repeat((byte)4, 32).ToArray(), [15] = pcr15 };

    private static byte[] MeasuredPcr15(params byte[][] events)
    {
        var bank = new SimulatedPcrBank();
        foreach (var e in events)
        {
            bank.MeasureEvent(Measurements.ClusterIdIndex, e);
        }
        return bank.Read(Measurements.ClusterIdIndex);
    }

    [Fact]
    public void ForRunningNode_Pcr15MeasuredWithClusterId_Passes()
    {
        var result = Base().ForRunningNode(ClusterId).Measurements.Compare(Pcrs(MeasuredPcr15(ClusterId)));
        Assert.True(result.Passed, result.ErrorText);
    }

    [Fact]
    public void ForRunningNode_Pcr15Zero_Refused()
    {
        var result = Base().ForRunningNode(ClusterId).Measurements.Compare(Pcrs(new byte[32]));
        Assert.False(result.Passed);
        Assert.Contains("at index 15", Assert.Single(result.Errors), StringComparison.Ordinal);
    }

    [Fact]
    public void ForRunningNode_OtherClusterOrExtendedTwice_Refused()
    {
        var other = (byte[])ClusterId.Clone();
        other[0] ^= 1;
        var policy = Base().ForRunningNode(ClusterId);
        Assert.False(policy.Measurements.Compare(Pcrs(MeasuredPcr15(other))).Passed);
        Assert.False(policy.Measurements.Compare(Pcrs(MeasuredPcr15(ClusterId, ClusterId))).Passed);
    }

    [Fact]
    public void ForKeyRelease_AfterRunningNodePolicy_StillRequiresZero()
    {
        var policy = Base();
        _ = policy.ForRunningNode(ClusterId);
        Assert.False(policy.ForKeyRelease().Measurements.Compare(Pcrs(MeasuredPcr15(ClusterId))).Passed);
        Assert.True(policy.ForKeyRelease().Measurements.Compare(Pcrs(new byte[32])).Passed);
        // Other PCRs are still enforced under the running-node policy.
        var wrong = Pcrs(MeasuredPcr15(ClusterId));
        wrong[4] = new byte[32];
        Assert.False(policy.ForRunningNode(ClusterId).Measurements.Compare(wrong).Passed);
    }
}
