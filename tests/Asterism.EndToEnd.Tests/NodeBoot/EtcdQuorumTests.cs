using System.Diagnostics;
using Asterism.Cloud;
using Asterism.ControlPlane;
using Asterism.EndToEnd.Tests.Infrastructure;
using Asterism.Protocol;
using Asterism.Tests;
using Xunit.Abstractions;

namespace Asterism.EndToEnd.Tests.NodeBoot;

/// <summary>3 control planes + 1 worker; the first boot (create + init + every node booted) is timed.</summary>
public sealed class EtcdQuorumCluster : ClusterFixture
{
    public override string Variant => "simulated";

    public override int Workers => 1;

    /// <summary>How long create + init + every node booted took.</summary>
    public TimeSpan FirstBoot { get; private set; }

    public override async Task InitializeAsync()
    {
        var watch = Stopwatch.StartNew();
        await base.InitializeAsync();
        await EnsureAllBootedAsync();
        FirstBoot = watch.Elapsed;
    }

    /// <summary>A connection to the etcd cluster with a control plane's own client certificate from its mounted state filesystem.</summary>
    public EtcdConnection Etcd(InstanceInfo controlPlane, params InstanceInfo[] members)
    {
        var client = Path.Combine(Files.NodeStateDir(controlPlane.Name), "etcd", "client");
        var tls = new TlsFiles(Path.Combine(client, "client.crt"), Path.Combine(client, "client.key"), Path.Combine(client, "ca.crt"));
        return new EtcdConnection(members.Select(m => new Uri($"https://{m.Address}:2379")), tls, TimeSpan.FromSeconds(3));
    }

    /// <summary>Runs etcdctl against <paramref name="controlPlane"/>'s member with its own client certificate (tests/Shared/Etcdctl.cs).</summary>
    public Task<(int ExitCode, string Output)> EtcdctlAsync(InstanceInfo controlPlane, params string[] args)
    {
        var client = Path.Combine(Files.NodeStateDir(controlPlane.Name), "etcd", "client");
        return Etcdctl.RunAsync([$"https://{controlPlane.Address}:2379"], Path.Combine(client, "ca.crt"), Path.Combine(client, "client.crt"), Path.Combine(client, "client.key"), args);
    }
}

/// <summary>
/// Issue #15 items 1–4 with real etcd members started by the nodes: init makes a one-member cluster and the joining
/// control planes are added (learner, promoted); the registry lists every node and the audit log every release; one
/// control plane rebooting rejoins on its own; two of three crashing leave the survivor without quorum — it releases
/// no key, the nodes wait and `status` says so — until `recover`, after which quorum returns, the worker rejoins and
/// files and etcd keys written before read back.
/// </summary>
public sealed class EtcdQuorumTests(EtcdQuorumCluster cluster, ITestOutputHelper output) : IClassFixture<EtcdQuorumCluster>
{
    private InstanceInfo Cp(int i) => cluster.ControlPlaneNodes[i];

    private InstanceInfo Worker => cluster.WorkerNodes[0];

    [Fact]
    [Step(1)]
    public async Task FirstBoot_EveryControlPlaneIsAVotingMember_RegistryAndAuditListEveryNode()
    {
        output.WriteLine($"first boot of 3 control planes + 1 worker (create, init, all booted): {cluster.FirstBoot.TotalSeconds:F1} s");
        var status = await cluster.Cli.RunOkAsync("status");
        Assert.Contains("etcd: 3 of 3 members up, quorum needs 2", status.Stdout, StringComparison.Ordinal);
        using var etcd = cluster.Etcd(Cp(0), Cp(0), Cp(1), Cp(2));
        var members = await new EtcdMembership(etcd).ListAsync();
        Assert.Equal(cluster.ControlPlaneNodes.Select(n => n.Name).Order(), members.Select(m => m.Name).Order());
        Assert.All(members, m => Assert.False(m.IsLearner, $"{m.Name} is still a learner"));
        var records = await new NodeRegistry(etcd).ListAsync();
        Assert.Equal(cluster.Instances.Select(n => n.Name).Order(), records.Select(r => r.Name).Order());
        Assert.All(records, r => Assert.Equal(Guid.Parse(cluster.DiskUuid(cluster.Node(r.Name))), r.DiskUuid));
        var audit = new AuditLog(etcd);
        Assert.True((await audit.VerifyAsync()).Intact);
        var entries = await ToListAsync(audit.ReadAsync());
        Assert.Contains(entries, e => e.Kind == AuditKind.MembershipChange && e.Node == Cp(0).Name);
        foreach (var node in cluster.Instances.Where(n => n != Cp(0)))
        {
            Assert.Contains(entries, e => e.Kind == AuditKind.Release && e.Node == node.Name);
        }
        // A key in etcd and a file on every node, to read back after the outage.
        await etcd.CallAsync((c, d, ct) => c.PutAsync(new Etcdserverpb.PutRequest { Key = Google.Protobuf.ByteString.CopyFromUtf8("/test/before"), Value = Google.Protobuf.ByteString.CopyFromUtf8("kept") }, deadline: d, cancellationToken: ct), CancellationToken.None);
        await cluster.WriteDataEverywhereAsync("before-outage");
        // The workload's cluster data (item 7): through control-plane-0's workload API into etcd, under /workload/ only.
        var auth = cluster.Credential.AuthorizationValue;
        using (var put = await ClusterFixture.WorkloadAsync(Cp(0), HttpMethod.Put, "/cluster-data/before", auth, new StringContent("cluster kept")))
        {
            Assert.Equal(System.Net.HttpStatusCode.NoContent, put.StatusCode);
        }
        var (code, stored) = await cluster.EtcdctlAsync(Cp(0), "get", "/workload/before", "--print-value-only");
        Assert.True(code == 0 && stored.Trim() == "cluster kept", stored);
        // A key naming the control plane's own prefix cannot leave /workload/; a worker keeps no cluster data; no credential, no write.
        using (var escape = await ClusterFixture.WorkloadAsync(Cp(0), HttpMethod.Put, "/cluster-data/..%2Fasterism%2Fnodes%2Fevil", auth, new StringContent("{}")))
        {
            Assert.True(escape.StatusCode is System.Net.HttpStatusCode.BadRequest or System.Net.HttpStatusCode.NotFound, escape.StatusCode.ToString());
        }
        using (var onWorker = await ClusterFixture.WorkloadAsync(Worker, HttpMethod.Put, "/cluster-data/before", auth, new StringContent("x")))
        {
            Assert.Equal(System.Net.HttpStatusCode.NotFound, onWorker.StatusCode);
        }
        using (var anonymous = await ClusterFixture.WorkloadAsync(Cp(0), HttpMethod.Put, "/cluster-data/before", "Bearer wrong", new StringContent("x")))
        {
            Assert.True(anonymous.StatusCode is System.Net.HttpStatusCode.Unauthorized or System.Net.HttpStatusCode.Forbidden, anonymous.StatusCode.ToString());
        }
        (code, var outside) = await cluster.EtcdctlAsync(Cp(0), "get", "--prefix", "--keys-only", "/asterism/nodes/evil");
        Assert.True(code == 0 && outside.Trim().Length == 0, outside);
    }

    [Fact]
    [Step(2)]
    public async Task OneControlPlaneReboots_RejoinsWithoutRecovery_AuditSaysRejoin()
    {
        await cluster.Cli.RunOkAsync("power", "reboot", Cp(2).Name);
        await cluster.WaitForPhaseAsync([Cp(2)], BootPhases.Booted);
        using var etcd = cluster.Etcd(Cp(0), Cp(0), Cp(1));
        var audit = new AuditLog(etcd);
        await WaitUntilAsync(async () => (await ToListAsync(audit.ReadAsync())).Any(e => e.Kind == AuditKind.Recovery && e.Node == Cp(2).Name && e.Detail == "unlocked by rejoin"),
            "control-plane-2's Recovery audit entry");
        await WaitUntilAsync(async () => (await cluster.Cli.RunOkAsync("status")).Stdout.Contains("etcd: 3 of 3 members up", StringComparison.Ordinal), "3 of 3 members up");
    }

    [Fact]
    [Step(3)]
    public async Task TwoOfThreeCrash_SurvivorReleasesNoKey_NodesWait_StatusSaysRunRecover()
    {
        var crashed = new[] { Cp(1), Cp(2) };
        await cluster.Cli.RunOkAsync("power", "crash", Cp(1).Name, Cp(2).Name);
        // Their etcd members died with them.
        Assert.DoesNotContain(Processes.Matching("/usr/bin/etcd"), p => crashed.Any(n => p.CommandLine.Contains($"https://{n.Address}:2379", StringComparison.Ordinal)));
        await cluster.Cli.RunOkAsync("power", "start", Cp(1).Name, Cp(2).Name);
        await cluster.Cli.RunOkAsync("power", "reboot", Worker.Name);
        await cluster.WaitForPhaseAsync([Cp(1), Cp(2), Worker], BootPhases.WaitingForKey);
        await WaitUntilAsync(async () => (await cluster.StatusAsync(Worker))?.LastError.Contains(ControlPlaneException.NoQuorumMessage, StringComparison.Ordinal) == true,
            "the worker's rejoin error naming the lost quorum");
        var status = await cluster.Cli.RunOkAsync("status");
        Assert.Contains("etcd: 1 of 3 members up, quorum needs 2 — run 'asterism recover'", status.Stdout, StringComparison.Ordinal);
        Assert.Contains("Refused key release without control-plane quorum", File.ReadAllText(cluster.Files.ConsoleLogPath(Cp(0).Name)), StringComparison.Ordinal);
        Assert.Equal(BootPhases.WaitingForKey, (await cluster.StatusAsync(Worker))?.Phase);
    }

    [Fact]
    [Step(4)]
    public async Task Recover_QuorumReturns_WorkerRejoins_FilesAndEtcdKeysIntact()
    {
        var recover = await cluster.Cli.RunAsync("recover");
        Assert.True(recover.ExitCode == 0, recover.ToString());
        await cluster.WaitForPhaseAsync(cluster.Instances, BootPhases.Booted);
        await cluster.AssertDataIntactAsync();
        using var etcd = cluster.Etcd(Cp(0), Cp(0), Cp(1), Cp(2));
        var kept = await etcd.CallAsync((c, d, ct) => c.GetAsync(new Etcdserverpb.RangeRequest { Key = Google.Protobuf.ByteString.CopyFromUtf8("/test/before") }, deadline: d, cancellationToken: ct), CancellationToken.None);
        Assert.Equal("kept", Assert.Single(kept.Kvs).Value.ToStringUtf8());
        // The workload's cluster data, read through another control plane than the one it was written through.
        using (var get = await ClusterFixture.WorkloadAsync(Cp(2), HttpMethod.Get, "/cluster-data/before", cluster.Credential.AuthorizationValue))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, get.StatusCode);
            Assert.Equal("cluster kept", await get.Content.ReadAsStringAsync());
        }
        Assert.Equal(4, (await new NodeRegistry(etcd).ListAsync()).Count);
        var audit = new AuditLog(etcd);
        await WaitUntilAsync(async () => (await ToListAsync(audit.ReadAsync())).Count(e => e.Kind == AuditKind.Recovery && e.Detail == "unlocked by operator recovery") == 2,
            "both recovered control planes' Recovery audit entries");
        Assert.True((await audit.VerifyAsync()).Intact);
        var status = await cluster.Cli.RunOkAsync("status");
        Assert.Contains("etcd: 3 of 3 members up, quorum needs 2", status.Stdout, StringComparison.Ordinal);
    }

    /// <summary>
    /// Issue #15 items 4 and 6 through the real CLI and the cluster API on 6443: a call without a client certificate is
    /// refused (anyone can reach the port); the admin lists and revokes the worker; its next rejoin is refused and the
    /// audit log shows the revocation, the refused release and an intact chain. Revoking an unknown node is one line.
    /// </summary>
    [Fact]
    [Step(5)]
    public async Task Revoke_WorkerRejoinRefused_AuditShowsIt_UnauthenticatedApiCallsRefused()
    {
        // The attacker: any local process, no credential, certificate checks switched off on its side.
        using (var anonymous = new HttpClient(new SocketsHttpHandler { SslOptions = { RemoteCertificateValidationCallback = (_, _, _, _) => true } }) { Timeout = TimeSpan.FromSeconds(20) })
        {
            await Assert.ThrowsAnyAsync<HttpRequestException>(() => anonymous.GetAsync($"https://{Cp(0).Address}:{Ports.ClusterApi}/clusterapi.ClusterApi/ListNodes"));
            await Assert.ThrowsAnyAsync<HttpRequestException>(() => anonymous.GetAsync($"http://{Cp(0).Address}:{Ports.ClusterApi}/healthz"));
        }

        var list = await cluster.Cli.RunOkAsync("node", "list");
        Assert.All(cluster.Instances, n => Assert.Contains(n.Name, list.Stdout, StringComparison.Ordinal));
        var unknown = await cluster.Cli.RunAsync("node", "revoke", "no-such-node");
        Assert.True(unknown.ExitCode != 0, unknown.ToString());
        Assert.Single(unknown.StderrLines, l => l.StartsWith("Error:", StringComparison.Ordinal));

        var revoked = await cluster.Cli.RunOkAsync("node", "revoke", Worker.Name);
        Assert.Contains($"Revoked {Worker.Name}", revoked.Stdout, StringComparison.Ordinal);
        await cluster.Cli.RunOkAsync("power", "reboot", Worker.Name);
        await cluster.WaitForPhaseAsync([Worker], BootPhases.WaitingForKey);
        CliResult audit = null!;
        await WaitUntilAsync(async () =>
        {
            audit = await cluster.Cli.RunOkAsync("audit");
            return audit.StdoutLines.Any(l => l.Contains("RefusedRelease", StringComparison.Ordinal) && l.Contains(Worker.Name, StringComparison.Ordinal));
        }, "a RefusedRelease audit entry for the revoked worker");
        output.WriteLine(audit.Stdout);
        Assert.Contains(audit.StdoutLines, l => l.Contains("Revocation", StringComparison.Ordinal) && l.Contains(Worker.Name, StringComparison.Ordinal));
        Assert.StartsWith("audit chain intact", audit.StdoutLines[^1], StringComparison.Ordinal);
        Assert.Equal(BootPhases.WaitingForKey, (await cluster.StatusAsync(Worker))?.Phase);
    }

    /// <summary>Issue #15 item 5: an audit entry edited with etcdctl (a control plane's client certificate) is named by `asterism audit`.</summary>
    [Fact]
    [Step(6)]
    public async Task AuditEntryEditedWithEtcdctl_AuditNamesTheBrokenLink_Exit1()
    {
        var key = "/asterism/audit/entries/" + 2.ToString("D20", System.Globalization.CultureInfo.InvariantCulture);
        var (code, value) = await cluster.EtcdctlAsync(Cp(0), "get", key, "--print-value-only");
        Assert.True(code == 0 && value.Contains("\"detail\":\"", StringComparison.Ordinal), value);
        var edited = value.Trim().Replace("\"detail\":\"", "\"detail\":\"edited: ", StringComparison.Ordinal);
        (code, var put) = await cluster.EtcdctlAsync(Cp(0), "put", key, edited);
        Assert.True(code == 0, put);

        var audit = await cluster.Cli.RunAsync("audit");
        output.WriteLine(audit.ToString());
        Assert.Equal(1, audit.ExitCode);
        Assert.Contains("audit chain broken at entry 2", audit.Stdout + audit.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    [Step(99, AfterFailure = true)]
    public async Task Terminate_LeavesNoProcess()
    {
        await cluster.Cli.RunOkAsync("terminate");
        Assert.Empty(cluster.LiveProcesses());
    }

    private static async Task<List<T>> ToListAsync<T>(IAsyncEnumerable<T> items)
    {
        var list = new List<T>();
        await foreach (var item in items)
        {
            list.Add(item);
        }
        return list;
    }

    /// <summary>Polls <paramref name="condition"/> until it holds, up to the fixture's boot timeout.</summary>
    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var watch = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(watch.Elapsed < ClusterFixture.BootTimeout, $"timed out waiting for {what}");
            await Task.Delay(200);
        }
    }
}
