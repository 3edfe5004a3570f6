using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Asterism.Atls;
using Asterism.Attestation.Identities;
using Asterism.Cli.Commands;
using Asterism.Cli.Recovery;
using Asterism.Cloud;
using Asterism.Cloud.Local;
using Asterism.EndToEnd.Tests.Infrastructure;
using Asterism.Protocol;
using Asterism.Protocol.Init;
using Asterism.Protocol.Join;
using Asterism.Tests;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Xunit.Abstractions;

namespace Asterism.EndToEnd.Tests.Security;

/// <summary>3 control-plane + 1 worker nodes, created but not initialized: the attacks on init come first.</summary>
public sealed class SecurityCluster : ClusterFixture
{
    public override string Variant => "simulated";

    public override int Workers => 1;

    public override bool InitAtStart => false;

    /// <summary>Everything the attackers received or were told (responses, errors, squatter logs), for the leak scan.</summary>
    public ConcurrentQueue<string> Received { get; } = new();

    /// <summary>Consoles of rogue node processes.</summary>
    public ConcurrentQueue<string> RogueConsoles { get; } = new();

    /// <summary>Nodes this test froze (SIGSTOP): resumed before the cluster is terminated, whatever happened.</summary>
    public ConcurrentDictionary<int, string> Frozen { get; } = new();

    /// <summary>A directory outside the workspace: the attacker has no access to the workspace.</summary>
    public string AttackerDir { get; } = Directory.CreateTempSubdirectory("asterism-attacker-").FullName;

    public override async Task DisposeAsync()
    {
        ResumeFrozen();
        await base.DisposeAsync();
        foreach (var left in Processes.Matching(AttackerDir))
        {
            Processes.Kill(left.Pid);
        }
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
/// Issue 12 acceptance, simulated variant: one 3+1 cluster goes through the attacks that do not disturb each other, in
/// order (init without the secret; forged attestation keys; a worker asking for control-plane material and another
/// node's disk; node processes that are not instances of the provider; a tampered node record; fake RecoveryServers),
/// then a scan of every console, CLI output and everything the attackers received for key bytes.
/// Every attack is performed by a process with no access to the workspace unless stated ("compromised worker").
/// Each test states why it fails on the commit before e5d131b ("Certified node identities").
/// </summary>
public sealed class TrustChainAttackTests(SecurityCluster cluster, ITestOutputHelper output) : IClassFixture<SecurityCluster>
{
    private const string JoinLogger = "joinService";

    private SecurityCluster Cluster { get; } = cluster;

    private InstanceInfo InitTarget => Cluster.ControlPlaneNodes[0];

    private InstanceInfo Worker => Cluster.WorkerNodes[0];

    private string DiskUuidOf(InstanceInfo node)
    {
        var policy = Asterism.Cli.Workspace.PolicyOf(new Asterism.Cli.Workspace(Cluster.Workspace).LoadConfig());
        using var authority = policy.CreateIdentityAuthority()!;
        return NodeIdentity.DiskUuidFor(authority.Fingerprint, node.Name);
    }

    /// <summary>
    /// Attack 6, part 1: before init, anyone on the host calls control-plane-0's init.API (it attests as the server;
    /// the attacker needs nothing to validate it) with a master secret of its own, a made-up init secret, and none.
    /// Before e5d131b init took any caller: the first call would have initialized the cluster with the attacker's
    /// master secret (exit 0 of the call, "Init succeeded"), and this test fails on the missing PermissionDenied.
    /// </summary>
    [Fact]
    [Step(1)]
    public async Task Init_WithoutTheInitSecret_PermissionDenied_NodeStaysUninitialized()
    {
        var attackerValidator = new Asterism.Attestation.Simulated.SimulatedValidator(new() { TrustAnyKey = true });
        foreach (var (label, secret) in new[] { ("made-up init secret", RandomNumberGenerator.GetBytes(32)), ("no init secret", Array.Empty<byte>()) })
        {
            var refused = await Attack.RefusedAsync(async () =>
            {
                using var handler = AtlsClient.CreateHandler(attackerValidator, new AtlsClientOptions { HandshakeTimeout = Attack.CallTimeout, ValidationTimeout = Attack.CallTimeout });
                using var channel = GrpcChannel.ForAddress($"https://{InitTarget.Address}:{Ports.Init}", new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = false });
                // The init port opens a moment after the node starts: retry only "nothing listens yet".
                var deadline = DateTime.UtcNow + ClusterFixture.BootTimeout;
                while (true)
                {
                    try
                    {
                        return await new Asterism.Protocol.Init.API.APIClient(channel).InitAsync(new InitRequest
                        {
                            MasterKey = ByteString.CopyFrom(RandomNumberGenerator.GetBytes(32)),
                            MasterSalt = ByteString.CopyFrom(RandomNumberGenerator.GetBytes(32)),
                            MeasurementSalt = ByteString.CopyFrom(RandomNumberGenerator.GetBytes(32)),
                            AttestationConfig = ByteString.CopyFrom(FakeTicket.Create().AttestationConfig),
                            ClusterName = "attacker",
                            InitSecret = ByteString.CopyFrom(secret),
                        }, deadline: DateTime.UtcNow.Add(Attack.CallTimeout));
                    }
                    catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable && DateTime.UtcNow < deadline)
                    {
                        await Task.Delay(250);
                    }
                }
            }, Cluster.Received, "init with " + label);
            output.WriteLine($"{label}: {refused.Message}");
            Assert.True(refused is RpcException { StatusCode: StatusCode.PermissionDenied }, $"{label}: expected PermissionDenied, got {refused}");
        }
        var log = await Cluster.WaitForLogAsync(InitTarget, l => l.Entries().Count(e => e.Is("WARN", "initServer", "Refused init call")) >= 2,
            "two \"Refused init call\" lines", TimeSpan.FromSeconds(10));
        Assert.All(log.Entries().Where(e => e.Msg == "Refused init call"), e => Assert.Equal("init secret missing or wrong", e.Field("reason")));
        Assert.DoesNotContain(log.Entries(), e => e.Msg is "Init succeeded" or "Init failed");
        var status = await Cluster.StatusAsync(InitTarget);
        Assert.NotNull(status);
        Assert.NotEqual(BootPhases.Booted, status.Phase);
        Assert.False(File.Exists(Cluster.MasterSecretPath));
    }

    /// <summary>Attack 6, end: the operator's own init (with the workspace's secret) still works after the refused attempts.</summary>
    [Fact]
    [Step(2)]
    public async Task Init_WithTheWorkspaceSecret_Succeeds_AfterRefusedAttempts()
    {
        var init = await Cluster.InitAsync();
        Assert.Contains($"All {Cluster.Instances.Count} nodes joined", init.Stdout, StringComparison.Ordinal);
        await Cluster.EnsureAllBootedAsync();
        Assert.Contains(Cluster.Log(InitTarget).Entries(), e => e.Msg == "Init succeeded");
        await Cluster.WriteDataEverywhereAsync("after-init");
    }

    /// <summary>
    /// Attack 1: a process with its own P-256 key signs a simulated document with exactly the expected PCRs (PCR 15
    /// zero) — with no identity certificate, with a self-signed certificate naming control-plane-1, and with one from
    /// a look-alike CA of its own — and asks every kind of ticket: control-plane join (master secret) and rejoin for
    /// control-plane-1's real disk. The JoinService's aTLS refuses it before any call (UntrustedKey, logged with the
    /// key's fingerprint and why). Before e5d131b `create` wrote trustAnyKey: every one of these calls returned the
    /// master key or the disk key, and the test fails on "the call succeeded".
    /// </summary>
    [Fact]
    [Step(3)]
    public async Task JoinService_ForgedAttestationKey_RefusedInHandshake_NoKeyReturned()
    {
        await Cluster.EnsureAllBootedAsync();
        var victim = Cluster.ControlPlaneNodes[1];
        var victimUuid = DiskUuidOf(victim);
        Assert.Equal(victimUuid, Cluster.DiskUuid(victim));
        var pcrs = Attack.ExpectedPcrs(Cluster);
        using var ca = new ForgedCa();
        var cases = new List<(string Label, ForgedKey Key, Func<ForgedKey, byte[]?> Identity, string Reason)>
        {
            ("no identity certificate", ForgedKey.Create(Path.Combine(Cluster.AttackerDir, "forged-1")), _ => null, "carries no identity certificate"),
            ("self-signed identity of " + victim.Name, ForgedKey.Create(Path.Combine(Cluster.AttackerDir, "forged-2")),
                k => k.SelfSignedIdentity(victim.Name, NodeIdentity.ControlPlaneRole), "not signed by the trusted authority"),
            ("identity from a look-alike CA", ForgedKey.Create(Path.Combine(Cluster.AttackerDir, "forged-3")),
                k => ca.Issue(victim.Name, NodeIdentity.ControlPlaneRole, k.Key.PublicKeySpki), "not signed by the trusted authority"),
        };
        var joinService = InitTarget;
        try
        {
            foreach (var (label, key, identity, reason) in cases)
            {
                var issuer = key.Issuer(pcrs, identity(key));
                var join = await Attack.RefusedAsync(() => Attack.JoinTicketAsync(joinService, issuer,
                    new IssueJoinTicketRequest { DiskUuid = victimUuid, IsControlPlane = true, NodeName = victim.Name }), Cluster.Received, label + ": IssueJoinTicket");
                var rejoin = await Attack.RefusedAsync(() => Attack.RejoinTicketAsync(joinService, issuer, victimUuid), Cluster.Received, label + ": IssueRejoinTicket");
                output.WriteLine($"{label}: join -> {join.GetType().Name}: {join.Message}; rejoin -> {rejoin.GetType().Name}");
                Assert.True(Attack.IsHandshakeRefusal(join), $"{label}: join refused how? {join}");
                Assert.True(Attack.IsHandshakeRefusal(rejoin), $"{label}: rejoin refused how? {rejoin}");

                // The JoinService names the key and the reason; the request never reached join.API.
                var refusals = await Cluster.WaitForLogAsync(joinService,
                    l => l.Entries().Count(e => e.Msg == "Failed to validate attestation document" && e.Field("attestationKey") == key.Fingerprint) >= 2,
                    $"two refusals of {label}", TimeSpan.FromSeconds(15));
                var line = refusals.Entries().Last(e => e.Msg == "Failed to validate attestation document" && e.Field("attestationKey") == key.Fingerprint);
                output.WriteLine("  JoinService: " + line.Raw);
                Assert.Equal("UntrustedKey", line.Field("reason"));
                Assert.Contains(reason, line.Field("error"), StringComparison.Ordinal);
                Assert.DoesNotContain(refusals.Entries(), e => e.Msg.StartsWith("IssueJoinTicket", StringComparison.Ordinal) && e.Raw.Contains(key.Fingerprint, StringComparison.Ordinal));
            }
        }
        finally
        {
            cases.ForEach(c => c.Key.Dispose());
        }
    }

    /// <summary>
    /// Attack 3 (compromised worker: the test loads the worker's real key and identity certificate from its node
    /// directory and replays its measured boot): IssueJoinTicket(is_control_plane = true) for its own disk is refused
    /// with PermissionDenied and no master key, logged with the worker's identity; the same credentials asking a
    /// worker ticket succeed (control: the refusal is about the role, not the credentials). Before e5d131b the
    /// JoinService believed the request's is_control_plane and returned the master key and salt.
    /// </summary>
    [Fact]
    [Step(4)]
    public async Task JoinService_WorkerAsksForControlPlaneMaterial_PermissionDenied()
    {
        await Cluster.EnsureAllBootedAsync();
        var issuer = Attack.NodeIssuer(Cluster, Worker, out var key);
        using (key)
        {
            var uuid = DiskUuidOf(Worker);
            var refused = await Attack.RefusedAsync(() => Attack.JoinTicketAsync(InitTarget, issuer,
                new IssueJoinTicketRequest { DiskUuid = uuid, IsControlPlane = true, NodeName = Worker.Name }), Cluster.Received, "worker: IssueJoinTicket as control plane");
            Assert.True(refused is RpcException { StatusCode: StatusCode.PermissionDenied }, $"expected PermissionDenied, got {refused}");
            var refusedUnnamed = await Attack.RefusedAsync(() => Attack.JoinTicketAsync(InitTarget, issuer,
                new IssueJoinTicketRequest { DiskUuid = uuid, IsControlPlane = true }), Cluster.Received, "worker: IssueJoinTicket as control plane, no name");
            Assert.True(refusedUnnamed is RpcException { StatusCode: StatusCode.PermissionDenied }, $"expected PermissionDenied, got {refusedUnnamed}");

            var log = await Cluster.WaitForLogAsync(InitTarget,
                l => l.Entries().Count(e => e.Is("WARN", JoinLogger, "Refused ticket request for another role or name") && e.Field("identity") == Worker.Name) >= 2,
                "the JoinService's refusal naming the worker", TimeSpan.FromSeconds(15));
            var line = log.Entries().Last(e => e.Msg == "Refused ticket request for another role or name");
            output.WriteLine("JoinService: " + line.Raw);
            Assert.Equal(NodeIdentity.WorkerRole, line.Field("role"));
            Assert.Equal("true", line.Field("requestedControlPlane"));

            // Control: the same credentials get a worker ticket, and it carries no control-plane material.
            var ticket = await Attack.JoinTicketAsync(InitTarget, issuer, new IssueJoinTicketRequest { DiskUuid = uuid, IsControlPlane = false, NodeName = Worker.Name });
            Assert.True(ticket.MasterKey.IsEmpty && ticket.MasterSalt.IsEmpty && ticket.AttestationConfig.IsEmpty, "a worker ticket carries control-plane material");
            Assert.Equal(32, ticket.StateDiskKey.Length);
        }
    }

    /// <summary>
    /// Attack 4 (compromised worker, as above): IssueRejoinTicket and IssueJoinTicket for control-plane-1's disk UUID
    /// are refused with PermissionDenied, and the JoinService logs the caller's identity, the disk it owns and the
    /// disk it asked for. Before e5d131b any attested caller got the key of any disk UUID it named.
    /// </summary>
    [Fact]
    [Step(5)]
    public async Task JoinService_WorkerAsksForAnotherNodesDisk_PermissionDenied_LoggedWithBothIdentities()
    {
        await Cluster.EnsureAllBootedAsync();
        var victim = Cluster.ControlPlaneNodes[1];
        var victimUuid = Cluster.DiskUuid(victim);
        var issuer = Attack.NodeIssuer(Cluster, Worker, out var key);
        using (key)
        {
            foreach (var joinService in new[] { InitTarget, Cluster.ControlPlaneNodes[2] })
            {
                var rejoin = await Attack.RefusedAsync(() => Attack.RejoinTicketAsync(joinService, issuer, victimUuid), Cluster.Received, $"worker: rejoin ticket for {victim.Name}'s disk at {joinService.Name}");
                var join = await Attack.RefusedAsync(() => Attack.JoinTicketAsync(joinService, issuer,
                    new IssueJoinTicketRequest { DiskUuid = victimUuid, IsControlPlane = false, NodeName = Worker.Name }), Cluster.Received, $"worker: join ticket for {victim.Name}'s disk at {joinService.Name}");
                Assert.True(rejoin is RpcException { StatusCode: StatusCode.PermissionDenied }, $"rejoin: expected PermissionDenied, got {rejoin}");
                Assert.True(join is RpcException { StatusCode: StatusCode.PermissionDenied }, $"join: expected PermissionDenied, got {join}");
                var log = await Cluster.WaitForLogAsync(joinService,
                    l => l.Entries().Count(e => e.Is("WARN", JoinLogger, "Refused ticket request for a disk of another node") && e.Field("requestedDiskUuid") == victimUuid) >= 2,
                    "the JoinService's refusal naming both identities", TimeSpan.FromSeconds(15));
                var lines = log.Entries().Where(e => e.Msg == "Refused ticket request for a disk of another node" && e.Field("requestedDiskUuid") == victimUuid).ToList();
                output.WriteLine($"{joinService.Name}: " + lines[^1].Raw);
                Assert.Contains(lines, e => e.Field("call") == "IssueRejoinTicket");
                Assert.Contains(lines, e => e.Field("call") == "IssueJoinTicket");
                Assert.All(lines, e =>
                {
                    Assert.Equal(Worker.Name, e.Field("identity"));
                    Assert.Equal(NodeIdentity.WorkerRole, e.Field("role"));
                    Assert.Equal(Cluster.DiskUuid(Worker), e.Field("ownedDiskUuid"));
                });
                Assert.DoesNotContain(log.Entries(), e => e.Msg == "IssueRejoinTicket successful" && e.Field("diskUuid") == victimUuid);
            }
        }
    }

    /// <summary>
    /// Attack 2: the attacker starts asterism-node itself, with the provider's binary and boot arguments and a
    /// measured-boot file copied from a real instance (world-readable), claiming to be control-plane-1 on an address of
    /// its own. (a) Its node directory holds a key it made, a self-signed identity certificate and the real
    /// provider-ca.pem: the node refuses to boot and says why. (b) It puts a CA of its own in provider-ca.pem, so its
    /// identity verifies locally and it boots and asks for a control-plane join ticket: every JoinService refuses its
    /// attestation (UntrustedKey, its key named in the log), it never joins. Before e5d131b the node needed no identity
    /// and the JoinService trusted any key: (b) joined the cluster and got the master secret.
    /// </summary>
    [Fact]
    [Step(6)]
    public async Task RogueNodeProcess_NotAnInstanceOfTheProvider_NeverGetsAKey()
    {
        await Cluster.EnsureAllBootedAsync();
        var claimed = Cluster.ControlPlaneNodes[1];
        // The real provider CA certificate: public (it is in asterism-conf.yaml and in every node directory).
        using var realCa = IdentityAuthority.FromPem(File.ReadAllText(IdentityFiles.AuthorityPath(Cluster.Files.NodeDir(Worker.Name))));
        var subnet = claimed.Address[..claimed.Address.LastIndexOf('.')];

        // (a) the real CA certificate, a self-signed identity: refuses to boot.
        var dirA = Path.Combine(Cluster.AttackerDir, "rogue-a");
        using (var key = Prepare(dirA, out var nodeDir))
        {
            IdentityFiles.WriteCertificate(IdentityFiles.AuthorityPath(nodeDir), realCa.CertificateDer);
            IdentityFiles.WriteCertificate(IdentityFiles.CertificatePath(nodeDir), key.SelfSignedIdentity(claimed.Name, NodeIdentity.ControlPlaneRole));
            using var rogue = RogueNode.Start(Cluster, dirA, claimed.Name, NodeIdentity.ControlPlaneRole, subnet + ".250");
            Assert.True(await rogue.WaitForExitAsync(ClusterFixture.BootTimeout), "a node with a self-signed identity kept running");
            var log = rogue.Log;
            Cluster.RogueConsoles.Enqueue(log.Text);
            output.WriteLine($"(a) exit {rogue.ExitCode}: " + log.Tail(2));
            Assert.Equal(1, rogue.ExitCode);
            Assert.Contains(log.Entries(), e => e.Msg == "Failed to prepare state disk"
                && e.Field("error")!.Contains("does not verify against its provider CA", StringComparison.Ordinal)
                && e.Field("error")!.Contains("not signed by the trusted authority", StringComparison.Ordinal));
            Assert.DoesNotContain(log.Entries(), e => e.Msg == "Preparing new state disk");
        }

        // (b) a CA of its own: boots and tries to join, but no JoinService is certified by its CA and no JoinService
        // would accept its key: with mutual aTLS the rogue refuses every real JoinService first (their certificates
        // do not chain to its CA), so it never even presents its attestation, and no ticket call reaches a JoinService.
        var dirB = Path.Combine(Cluster.AttackerDir, "rogue-b");
        using (var ca = new ForgedCa())
        using (var key = Prepare(dirB, out var nodeDir))
        {
            IdentityFiles.WriteCertificate(IdentityFiles.AuthorityPath(nodeDir), ca.Certificate.RawData);
            IdentityFiles.WriteCertificate(IdentityFiles.CertificatePath(nodeDir), ca.Issue(claimed.Name, NodeIdentity.ControlPlaneRole, key.Key.PublicKeySpki));
            using var rogue = RogueNode.Start(Cluster, dirB, claimed.Name, NodeIdentity.ControlPlaneRole, subnet + ".251");
            try
            {
                await Poll.UntilAsync(() => rogue.Log.Entries().Any(e => e.Msg == "Failed to join on endpoint"), ClusterFixture.BootTimeout);
                var log = rogue.Log;
                Assert.False(rogue.HasExited, "the rogue node with its own CA should run and ask for tickets:\n" + log.Tail());
                Assert.DoesNotContain(Cluster.ControlPlaneNodes, cp => NodeLog.Read(Cluster.Files.ConsoleLogPath(cp.Name)).AllEntries()
                    .Any(e => e.Msg is "IssueJoinTicket called" or "IssueRejoinTicket called" && e.Field("attestationKey") == key.Fingerprint));
                var failed = log.Entries().First(e => e.Msg == "Failed to join on endpoint");
                output.WriteLine("(b) rogue node: " + failed.Raw);
                Assert.Contains(log.Entries(), e => e.Msg == "Preparing new state disk" && e.Field("uuid") == NodeIdentity.DiskUuidFor(ca.Fingerprint, claimed.Name));
                Assert.DoesNotContain(log.Entries(), e => e.Msg is "Successfully joined the cluster" or "Node booted");
            }
            finally
            {
                rogue.Dispose();
                Cluster.RogueConsoles.Enqueue(rogue.Log.Text);
            }
            Assert.Empty(Processes.Matching(dirB));
        }

        ForgedKey Prepare(string dir, out string nodeDir)
        {
            nodeDir = Path.Combine(dir, "node");
            OwnerOnly.CreateDirectory(nodeDir);
            // The measured boot of a real instance (the file is world-readable): the rogue's PCRs are the expected ones.
            File.Copy(Cluster.Files.BootMeasurementsPath(Worker.Name), Path.Combine(dir, MeasuredBoot.FileName));
            return ForgedKey.Create(nodeDir);
        }
    }

    /// <summary>
    /// Setup of attack 5 and attack 6 part 2. control-plane-2 hangs (SIGSTOP: the provider still reports it running,
    /// its ports stay bound but answer nothing), control-plane-0 and -1 crash and restart and wait for their key.
    /// A tampered asterism-nodes.json (two disk UUIDs swapped, MAC kept) makes `recover` refuse with a clear message
    /// before it contacts any node: neither waiting node logs a recover call. Before e5d131b there was no record and
    /// recover sent each node the key of whatever UUID it reported: the run pushed both keys and exited 0.
    /// </summary>
    [Fact]
    [Step(7)]
    public async Task Recover_TamperedNodeRecord_RefusedBeforeContactingAnyNode()
    {
        await Cluster.EnsureAllBootedAsync();
        var hung = Cluster.ControlPlaneNodes[2];
        var waiting = Cluster.ControlPlaneNodes.Take(2).ToList();
        var pid = (await Cluster.ListAsync()).Single(i => i.Name == hung.Name).Pid!.Value;
        Cluster.Frozen[pid] = hung.Name;
        Attack.Signal(pid, "STOP");
        await Cluster.Cli.RunOkAsync(["power", "crash", .. waiting.Select(n => n.Name)]);
        await Cluster.Cli.RunOkAsync(["power", "start", .. waiting.Select(n => n.Name)]);
        await Cluster.WaitForPhaseAsync(waiting, BootPhases.WaitingForKey);
        foreach (var node in waiting)
        {
            await Cluster.WaitForLogAsync(node, l => l.Has("ERROR", "rejoinClient", "Failed to rejoin on all endpoints"), "\"Failed to rejoin on all endpoints\"");
        }

        var path = Path.Combine(Cluster.Workspace, NodeRecord.FileName);
        var original = File.ReadAllBytes(path);
        try
        {
            var json = JsonNode.Parse(original)!.AsObject();
            var nodes = json["nodes"]!.AsArray();
            var first = nodes.First(n => n!["name"]!.GetValue<string>() == waiting[0].Name)!;
            var second = nodes.First(n => n!["name"]!.GetValue<string>() == waiting[1].Name)!;
            (first["diskUuid"], second["diskUuid"]) = (second["diskUuid"]!.DeepClone(), first["diskUuid"]!.DeepClone());
            File.WriteAllText(path, json.ToJsonString());
            foreach (var args in new[] { new[] { "recover" }, ["recover", "--endpoint", waiting[0].Address] })
            {
                var result = await Cluster.Cli.RunAsync(args);
                output.WriteLine(result.ToString());
                Assert.NotEqual(0, result.ExitCode);
                Assert.Contains("was modified or belongs to another master secret", result.Stderr, StringComparison.Ordinal);
                Assert.DoesNotContain(RecoverCommand.PushedLine, result.Stdout, StringComparison.Ordinal);
            }
        }
        finally
        {
            File.WriteAllBytes(path, original);
        }
        foreach (var node in waiting)
        {
            Assert.DoesNotContain(Cluster.Log(node).Entries(), e => e.Msg == "Received recover call");
        }
        await Cluster.WaitForPhaseAsync(waiting, BootPhases.WaitingForKey, TimeSpan.FromSeconds(10));
    }

    /// <summary>
    /// Attack 5: with control-plane-0 and -1 waiting and control-plane-2 hung (its :9999 free), the attacker binds
    /// 127.x(control-plane-2):9999 with a real aTLS RecoveryServer that reports control-plane-2's disk UUID, attesting
    /// (i) with a key of its own and the expected PCRs (PCR 15 zero), (ii) with the worker's real key and certificate
    /// (compromised worker), (iii) with control-plane-1's real key and certificate (compromised control plane). Parallel
    /// `recover` dials the squatter as control-plane-2 and refuses it in the handshake — the squatter receives no call at
    /// all — exits 1 naming control-plane-2, and still recovers the two real waiting nodes in the same run (i). Through
    /// `--endpoint` (no instance known) the forged and the worker identities are refused too (not certified / not a
    /// control plane). Before e5d131b, (i) attested (trustAnyKey), recover sent it the measurement secret and
    /// control-plane-2's disk key and printed "Pushed recovery key." for it: the squatter's log has the key, the test fails.
    /// </summary>
    [Fact]
    [Step(8)]
    public async Task Recover_FakeRecoveryServerOnAControlPlaneAddress_NothingPushed_RealNodesRecovered()
    {
        var hung = Cluster.ControlPlaneNodes[2];
        var waiting = Cluster.ControlPlaneNodes.Take(2).ToList();
        Assert.True(Cluster.Frozen.Values.Contains(hung.Name), "step 7 did not freeze " + hung.Name);
        await Cluster.WaitForPhaseAsync(waiting, BootPhases.WaitingForKey);
        var hungUuid = Cluster.DiskUuid(hung);
        var address = IPAddress.Parse(hung.Address);
        try
        {
            // (i) a key of its own: parallel recover refuses it and recovers the real nodes.
            using (var forged = ForgedKey.Create(Path.Combine(Cluster.AttackerDir, "squatter")))
            {
                var issuer = forged.Issuer(Attack.ExpectedPcrs(Cluster), forged.SelfSignedIdentity(hung.Name, NodeIdentity.ControlPlaneRole));
                await using var squatter = await Squatter.RecoveryServerAsync(address, issuer, hungUuid, hung.Name);
                try
                {
                    var parallel = await Cluster.Cli.RunAsync("recover");
                    output.WriteLine(parallel.ToString());
                    AssertRefusedNamed(parallel, hung, $"{hung.Address}:{Ports.Recovery}", "attestation failed");
                    Assert.Equal(2, parallel.StdoutLines.Count(l => l == RecoverCommand.PushedLine));
                    Assert.Contains(RecoverCommand.RecoveredLine(2), parallel.StdoutLines);
                    await Cluster.WaitForPhaseAsync(waiting, BootPhases.Booted);

                    var throughEndpoint = await Cluster.Cli.RunAsync("recover", "--endpoint", hung.Address, "--retry-interval", "1s");
                    output.WriteLine(throughEndpoint.ToString());
                    AssertRefusedNamed(throughEndpoint, null, $"{hung.Address}:{Ports.Recovery}", "attestation failed");
                    Assert.True(squatter.Connections >= 2, $"the squatter saw {squatter.Connections} connections: recover never dialed it");
                }
                finally
                {
                    Cluster.Received.Enqueue(squatter.Log.ToString());
                }
                Assert.True(squatter.Log.Calls == 0, "the squatter received a recover call:\n" + squatter.Log);
            }

            // (ii) the worker's real identity, (iii) control-plane-1's real identity: not the instance dialed / not a control plane.
            foreach (var impersonated in new[] { Worker, Cluster.ControlPlaneNodes[1] })
            {
                var issuer = Attack.NodeIssuer(Cluster, impersonated, out var key);
                using (key)
                {
                    await using var squatter = await Squatter.RecoveryServerAsync(address, issuer, hungUuid, hung.Name);
                    try
                    {
                        var parallel = await Cluster.Cli.RunAsync("recover");
                        output.WriteLine(parallel.ToString());
                        AssertRefusedNamed(parallel, hung, $"{hung.Address}:{Ports.Recovery}", $"certified as {impersonated.Name}, expected {hung.Name}");
                        if (!impersonated.IsControlPlane)
                        {
                            var throughEndpoint = await Cluster.Cli.RunAsync("recover", "--endpoint", hung.Address, "--retry-interval", "1s");
                            output.WriteLine(throughEndpoint.ToString());
                            AssertRefusedNamed(throughEndpoint, null, $"{hung.Address}:{Ports.Recovery}", $"certified as {NodeIdentity.WorkerRole}, expected {NodeIdentity.ControlPlaneRole}");
                        }
                    }
                    finally
                    {
                        Cluster.Received.Enqueue(squatter.Log.ToString());
                    }
                    Assert.True(squatter.Log.Calls == 0, $"the squatter with {impersonated.Name}'s identity received a recover call:\n" + squatter.Log);
                }
            }
        }
        finally
        {
            Cluster.ResumeFrozen();
        }
        await Cluster.EnsureAllBootedAsync();
        await Cluster.AssertDataIntactAsync();
    }

    /// <summary>
    /// `status` shows each node's certified identity: for every node, the fingerprint of its identity certificate (at
    /// least the first 16 hex digits, as <see cref="NodeIdentity.ToString"/> prints it) appears in `status` or
    /// `status --json`. NEEDS the lead's status change (not on main yet): fails until it lands, and the exact shape
    /// (a JSON field name, a column) may then be pinned here.
    /// </summary>
    [Fact]
    [Step(9)]
    public async Task Status_ShowsEachNodesCertifiedIdentity()
    {
        await Cluster.EnsureAllBootedAsync();
        var text = (await Cluster.Cli.RunOkAsync("status")).Stdout + (await Cluster.Cli.RunOkAsync("status", "--json")).Stdout;
        output.WriteLine(text);
        var missing = Cluster.Instances.Where(n =>
        {
            var fingerprint = IdentityCertificate.FingerprintOf(IdentityFiles.ReadCertificate(IdentityFiles.CertificatePath(Cluster.Files.NodeDir(n.Name))));
            return !text.Contains(fingerprint[..16], StringComparison.OrdinalIgnoreCase);
        }).Select(n => n.Name).ToList();
        Assert.True(missing.Count == 0, "status does not show the certified identity (certificate fingerprint) of: " + string.Join(", ", missing));
    }

    /// <summary>
    /// No key bytes (master key and salt, measurement secret, every disk key; five printable forms) in any node's
    /// console, the provider's log, any CLI output, the rogue nodes' consoles, or anything the attackers received.
    /// </summary>
    /// <summary>Attacker transcripts each step leaves in <see cref="SecurityCluster.Received"/> when it passes.</summary>
    private static readonly Dictionary<int, int> ReceivedPerStep = new()
    {
        [1] = 2, // init without the secret, ×2
        [3] = 6, // forged attestation keys: 3 cases × (join, rejoin)
        [4] = 2, // the worker asking as control plane
        [5] = 4, // another node's disk: 2 JoinServices × (join, rejoin)
        [8] = 3, // squatters
    };

    /// <summary>The step that leaves the two rogue nodes' consoles.</summary>
    private const int RogueStep = 6;

    [Fact]
    [Step(98, AfterFailure = true)]
    public void Leaks_NoKeyBytesInLogsOutputsOrAnythingTheAttackersReceived()
    {
        using var master = Cluster.LoadMasterSecret();
        var secrets = KeyForms.ClusterSecrets(master, Cluster.Instances.Select(Cluster.DiskUuid)).ToList();
        var findings = new List<string>();
        foreach (var node in Cluster.Instances)
        {
            findings.AddRange(KeyForms.FindIn(Cluster.Log(node).Text, $"console of {node.Name}", secrets));
        }
        findings.AddRange(KeyForms.FindIn(File.ReadAllText(Cluster.Files.LogPath), "cloud.log", secrets));
        foreach (var run in Cluster.Cli.Transcript)
        {
            findings.AddRange(KeyForms.FindIn(run.Stdout + run.Stderr, $"output of asterism {string.Join(' ', run.Args)}", secrets));
        }
        foreach (var console in Cluster.RogueConsoles)
        {
            findings.AddRange(KeyForms.FindIn(console, "a rogue node's console", secrets));
        }
        foreach (var received in Cluster.Received)
        {
            findings.AddRange(KeyForms.FindIn(received, "what an attacker received: " + received[..Math.Min(80, received.Length)], secrets));
        }
        // Every step that passed left all its artefacts; a failed or skipped one may have left fewer (still scanned).
        var ledger = StepLedger.Of(GetType());
        var expectedReceived = ReceivedPerStep.Where(p => ledger.Passed(p.Key)).Sum(p => p.Value);
        Assert.True(Cluster.Received.Count >= expectedReceived, $"only {Cluster.Received.Count} attacker transcripts of the {expectedReceived} the passed steps leave: did the attacks run?");
        if (ledger.Passed(RogueStep))
        {
            Assert.Equal(2, Cluster.RogueConsoles.Count);
        }
        Assert.Empty(findings);
    }

    [Fact]
    [Step(99, AfterFailure = true)]
    public async Task Terminate_StopsEveryProcess()
    {
        Cluster.ResumeFrozen();
        await Cluster.Cli.RunOkAsync("terminate");
        Assert.Empty(await Processes.WaitGoneAsync(Cluster.Workspace, TimeSpan.FromSeconds(10)));
        Assert.Empty(Processes.Matching(Cluster.AttackerDir));
    }

    /// <summary>recover exited 1, named the node (or the endpoint) with the reason, and pushed nothing to it.</summary>
    private static void AssertRefusedNamed(CliResult result, InstanceInfo? node, string endpoint, string reason)
    {
        Assert.Equal(1, result.ExitCode);
        var line = result.StderrLines.SingleOrDefault(l => l.StartsWith("Error: node ", StringComparison.Ordinal) && l.Contains(endpoint, StringComparison.Ordinal));
        Assert.True(line is not null, "no error line names " + endpoint + ":\n" + result);
        if (node is not null)
        {
            Assert.StartsWith($"Error: node {node.Name} ({endpoint}): ", line, StringComparison.Ordinal);
        }
        Assert.Contains(reason, line, StringComparison.Ordinal);
    }
}
