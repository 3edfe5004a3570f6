using System.Collections.Concurrent;
using System.Net;
using Asterism.Attestation.Identities;
using Asterism.Cli.Commands;
using Asterism.Cli.Recovery;
using Asterism.Crypto;
using Asterism.EndToEnd.Tests.Infrastructure;
using Asterism.EndToEnd.Tests.Security;
using Asterism.Protocol;
using Xunit.Abstractions;

namespace Asterism.EndToEnd.Tests.Operator;

/// <summary>2 control planes, no worker: enough for "every waiting node" and one node to impersonate.</summary>
public sealed class DryRunCluster : ClusterFixture
{
    public override string Variant => "simulated";

    public override int ControlPlanes => 2;

    public override int Workers => 0;

    /// <summary>Nodes a test froze (SIGSTOP): resumed before the cluster is terminated, whatever happened.</summary>
    public ConcurrentDictionary<int, string> Frozen { get; } = new();

    /// <summary>A directory outside the workspace for the attacker's key.</summary>
    public string AttackerDir { get; } = Directory.CreateTempSubdirectory("asterism-attacker-").FullName;

    public override async Task DisposeAsync()
    {
        ResumeFrozen();
        await base.DisposeAsync();
        Directory.Delete(AttackerDir, recursive: true);
    }

    public void ResumeFrozen()
    {
        foreach (var pid in Frozen.Keys)
        {
            if (Processes.IsAlive(pid))
            {
                Attack.Signal(pid, "CONT");
            }
            Frozen.TryRemove(pid, out _);
        }
    }
}

/// <summary>
/// Issue 16 item 3, first half: `recover --dry-run` on a real cluster. It attests every waiting control plane and asks
/// it which disk it waits for (the recoverproto probe) but sends no secret: the nodes keep waiting, their disk images
/// stay byte-identical, and a real recover right after it does what the rehearsal said. A wrong master secret and a
/// squatter on a control plane's recovery port make it exit 1 naming the node.
/// </summary>
public sealed class RecoverDryRunTests(DryRunCluster cluster, ITestOutputHelper output) : IClassFixture<DryRunCluster>
{
    private DryRunCluster Cluster { get; } = cluster;

    [Fact]
    [Step(1)]
    public async Task DryRun_EveryControlPlaneWaiting_Exit0_NamesEachDisk_NothingSent_DisksIdentical()
    {
        await Cluster.EnsureAllBootedAsync();
        await Cluster.Cli.RunOkAsync("power", "crash", "--all");
        await Cluster.Cli.RunOkAsync("power", "start", "--all");
        await Cluster.WaitForPhaseAsync(Cluster.ControlPlaneNodes, BootPhases.WaitingForKey);
        var hashes = Cluster.ControlPlaneNodes.ToDictionary(n => n.Name, Cluster.DiskHash);

        var result = await Cluster.Cli.RunAsync("recover", "--dry-run");
        output.WriteLine(result.ToString());

        Assert.True(result.ExitCode == 0, result.ToString());
        var expected = Cluster.ControlPlaneNodes
            .Select(n => RecoveryRehearsal.WouldPushLine(n.Name, $"{n.Address}:{Ports.Recovery}", Cluster.DiskUuid(n)))
            .Append(RecoveryRehearsal.WouldRecoverLine(Cluster.ControlPlanes));
        // Lines come in the order the nodes answered; the set and the last line are fixed.
        Assert.Equal(expected.Order(StringComparer.Ordinal), result.StdoutLines.Order(StringComparer.Ordinal));
        Assert.Equal(RecoveryRehearsal.WouldRecoverLine(Cluster.ControlPlanes), result.StdoutLines[^1]);
        Assert.DoesNotContain(RecoverCommand.PushedLine, result.Stdout, StringComparison.Ordinal);
        foreach (var node in Cluster.ControlPlaneNodes)
        {
            // The node answered the probe, received no key, and still waits.
            var log = await Cluster.WaitForLogAsync(node, l => l.Entries().Any(e => e.Msg == "Answered recovery probe, still waiting for decryption key"), "the probe answer");
            Assert.DoesNotContain(log.Entries(), e => e.Msg.StartsWith("Received state disk key", StringComparison.Ordinal) || e.Msg == "Rejected state disk key");
        }
        await Cluster.WaitForPhaseAsync(Cluster.ControlPlaneNodes, BootPhases.WaitingForKey, TimeSpan.FromSeconds(10));
        Assert.All(Cluster.ControlPlaneNodes, n => Assert.True(hashes[n.Name] == Cluster.DiskHash(n), $"disk of {n.Name} changed"));
        AssertNoKeyBytes(result);
    }

    [Fact]
    [Step(2)]
    public async Task DryRun_MasterSecretOfAnotherCluster_Exit1_EachControlPlaneNamed_ThenRealRecoverSucceeds()
    {
        await Cluster.WaitForPhaseAsync(Cluster.ControlPlaneNodes, BootPhases.WaitingForKey);
        var other = Path.Combine(Cluster.Workspace, "other-cluster-mastersecret.json");
        using (var foreign = MasterSecret.Generate())
        {
            foreign.Save(other);
        }
        var hashes = Cluster.ControlPlaneNodes.ToDictionary(n => n.Name, Cluster.DiskHash);

        var result = await Cluster.Cli.RunAsync("recover", "--dry-run", "--master-secret", other);
        output.WriteLine(result.ToString());

        Assert.Equal(1, result.ExitCode);
        Assert.Contains(result.StderrLines, l => l.Contains("node record", StringComparison.Ordinal) && l.Contains("another master secret", StringComparison.Ordinal));
        foreach (var node in Cluster.ControlPlaneNodes)
        {
            Assert.Contains(result.StderrLines, l => l.StartsWith($"Error: node {node.Name} ({node.Address}:{Ports.Recovery}): the node would refuse the key", StringComparison.Ordinal));
        }
        Assert.DoesNotContain(result.StdoutLines, l => l.StartsWith("Would push", StringComparison.Ordinal));
        await Cluster.WaitForPhaseAsync(Cluster.ControlPlaneNodes, BootPhases.WaitingForKey, TimeSpan.FromSeconds(10));
        Assert.All(Cluster.ControlPlaneNodes, n => Assert.True(hashes[n.Name] == Cluster.DiskHash(n), $"disk of {n.Name} changed"));

        // The rehearsals changed nothing: the real run still recovers every node, as step 1 predicted.
        var real = await Cluster.Cli.RunAsync("recover");
        output.WriteLine(real.ToString());
        Assert.True(real.ExitCode == 0, real.ToString());
        await Cluster.EnsureAllBootedAsync();
    }

    /// <summary>
    /// Attack: control-plane-1 hangs (SIGSTOP, booted, so its :9999 is free) while control-plane-0 waits for its key;
    /// the attacker binds 127.x(control-plane-1):9999 with an aTLS RecoveryServer attesting with a key of its own and
    /// the expected PCRs. The dry run dials it as control-plane-1 (its status does not answer), refuses it in the
    /// handshake, names it and exits 1; the squatter receives no call. control-plane-0 is still reported as one a real
    /// run would push.
    /// </summary>
    [Fact]
    [Step(3)]
    public async Task DryRun_SquatterOnAControlPlanesRecoveryPort_RefusedAndNamed_Exit1()
    {
        await Cluster.EnsureAllBootedAsync();
        var waiting = Cluster.ControlPlaneNodes[0];
        var hung = Cluster.ControlPlaneNodes[1];
        var hungUuid = Cluster.DiskUuid(hung);
        var pid = (await Cluster.ListAsync()).Single(i => i.Name == hung.Name).Pid!.Value;
        Cluster.Frozen[pid] = hung.Name;
        Attack.Signal(pid, "STOP");
        try
        {
            await Cluster.Cli.RunOkAsync("power", "crash", waiting.Name);
            await Cluster.Cli.RunOkAsync("power", "start", waiting.Name);
            await Cluster.WaitForPhaseAsync([waiting], BootPhases.WaitingForKey);
            using var forged = ForgedKey.Create(Path.Combine(Cluster.AttackerDir, "squatter"));
            var issuer = forged.Issuer(Attack.ExpectedPcrs(Cluster), forged.SelfSignedIdentity(hung.Name, NodeIdentity.ControlPlaneRole));
            await using var squatter = await Squatter.RecoveryServerAsync(IPAddress.Parse(hung.Address), issuer, hungUuid, hung.Name);

            var result = await Cluster.Cli.RunAsync("recover", "--dry-run", "--timeout", "10s");
            output.WriteLine(result.ToString());

            Assert.Equal(1, result.ExitCode);
            Assert.Contains(result.StderrLines, l => l.StartsWith($"Error: node {hung.Name} ({hung.Address}:{Ports.Recovery}): attestation failed", StringComparison.Ordinal));
            Assert.Contains(RecoveryRehearsal.WouldPushLine(waiting.Name, $"{waiting.Address}:{Ports.Recovery}", Cluster.DiskUuid(waiting)), result.StdoutLines);
            Assert.True(squatter.Connections >= 1, $"the squatter saw {squatter.Connections} connections: the dry run never dialed it");
            Assert.True(squatter.Log.Calls == 0, "the squatter received a recover call:\n" + squatter.Log);
            await Cluster.WaitForPhaseAsync([waiting], BootPhases.WaitingForKey, TimeSpan.FromSeconds(10));
        }
        finally
        {
            Cluster.ResumeFrozen();
        }
        var real = await Cluster.Cli.RunAsync("recover");
        output.WriteLine(real.ToString());
        await Cluster.EnsureAllBootedAsync();
    }

    /// <summary>No printable form of the master key and salt, the measurement secret or a disk key in what the CLI printed.</summary>
    private void AssertNoKeyBytes(CliResult result)
    {
        using var master = Cluster.LoadMasterSecret();
        var secrets = KeyForms.ClusterSecrets(master, Cluster.ControlPlaneNodes.Select(Cluster.DiskUuid));
        Assert.Empty(KeyForms.FindIn(result.Stdout + result.Stderr, "recover --dry-run output", secrets));
    }
}
