using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Asterism.ControlPlane;
using Asterism.Node.Services;
using Asterism.Protocol;
using Asterism.Protocol.ClusterApi;
using Etcdserverpb;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;
using ClusterApiGrpc = Asterism.Protocol.ClusterApi.ClusterApi;
using EtcdClusterState = Asterism.ControlPlane.ClusterState;
using RegistryRole = Asterism.ControlPlane.NodeRole;
using Verification = Asterism.Protocol.ClusterApi.AuditVerification;

namespace Asterism.Node.Tests.ClusterApi;

/// <summary>
/// The cluster API as the node serves it: a real Kestrel listener with the node's mutual TLS on a random 127.78.R.1,
/// the real gRPC service, and for the operations a real one-member etcd on the same address (stopped by PID).
/// Every way in without the admin credential is tried and seen refused.
/// </summary>
public sealed class ClusterApiTests : IAsyncLifetime
{
    private readonly string _root = Directory.CreateTempSubdirectory("asterism-clusterapi-").FullName;
    private readonly IPAddress _address = new([127, 78, (byte)RandomNumberGenerator.GetInt32(1, 255), (byte)RandomNumberGenerator.GetInt32(2, 255)]);
    private readonly ControlPlaneAccess _access = new();
    private ClusterCa _ca = null!;
    private WebApplication _host = null!;
    private EtcdMember? _etcd;
    private EtcdConnection? _connection;
    private ClusterApiService _service = null!;

    public async Task InitializeAsync()
    {
        _ca = ClusterCa.Create(Path.Combine(_root, "state", Services.ClusterApi.CaFolder), "test");
        var (server, ca) = Services.ClusterApi.LoadServerCredentials(Path.Combine(_root, "state"), "cp0", _address)!.Value;
        _host = await Listeners.StartAsync(_address, Ports.ClusterApi, NullLoggerFactory.Instance, "clusterApi",
            listen => Services.ClusterApi.UseMutualTls(listen, server, ca),
            services => services.AddSingleton(_service = new ClusterApiService(_access, "cp0", NullLoggerFactory.Instance)),
            app => app.MapGrpcService<ClusterApiService>(),
            CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        _access.Detach();
        await Listeners.StopAsync(_host);
        _connection?.Dispose();
        if (_etcd is not null)
        {
            await _etcd.KillAsync();
        }
        _ca.Dispose();
        Directory.Delete(_root, recursive: true);
    }

    [Fact]
    public async Task Health_AdminCertificate_AnswersWithoutEtcd()
    {
        using var admin = Admin(_ca);
        var health = await Client(admin).HealthAsync(new HealthRequest(), deadline: Deadline());
        Assert.Equal("cp0", health.ServedBy);
        Assert.False(health.HasQuorum);
        Assert.Contains("not running", health.Quorum, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Call_NoClientCertificate_Refused()
    {
        var e = await Assert.ThrowsAsync<RpcException>(async () => await Client(null).HealthAsync(new HealthRequest(), deadline: Deadline()));
        Assert.NotEqual(StatusCode.OK, e.StatusCode);
        Assert.NotEqual(StatusCode.PermissionDenied, e.StatusCode);
    }

    [Fact]
    public async Task Call_AdminCertificateOfAnotherCa_Refused()
    {
        using var foreign = ClusterCa.Create(Path.Combine(_root, "foreign"), "foreign");
        using var admin = Admin(foreign);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await Client(admin).HealthAsync(new HealthRequest(), deadline: Deadline()));
        Assert.Contains(e.StatusCode, new[] { StatusCode.Unavailable, StatusCode.Internal });
    }

    [Fact]
    public async Task Call_PlainHttp_Refused()
    {
        using var channel = GrpcChannel.ForAddress($"http://{_address}:{Ports.ClusterApi}");
        var e = await Assert.ThrowsAsync<RpcException>(async () => await new ClusterApiGrpc.ClusterApiClient(channel).HealthAsync(new HealthRequest(), deadline: Deadline()));
        Assert.NotEqual(StatusCode.OK, e.StatusCode);
    }

    [Fact]
    public async Task Call_NodeCertificateOfClusterCa_PermissionDenied()
    {
        // A node's etcd client certificate chains to the same CA but carries no admin role.
        using var node = _ca.IssueClient(Path.Combine(_root, "node-client"), "worker-0").LoadCertificate();
        var e = await Assert.ThrowsAsync<RpcException>(async () => await Client(node).RevokeNodeAsync(new RevokeNodeRequest { Name = "worker-0" }, deadline: Deadline()));
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
    }

    [Fact]
    public async Task Client_ServerOfAnotherCa_Refused()
    {
        // The CLI's rule (ClusterApiTls.ChainsTo with serverAuth) against a server whose CA it does not hold.
        using var foreign = ClusterCa.Create(Path.Combine(_root, "foreign"), "foreign");
        using var admin = Admin(_ca);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await Client(admin, foreign.Certificate).HealthAsync(new HealthRequest(), deadline: Deadline()));
        // The handshake fails on our side; the gRPC client reports that as Internal or Unavailable.
        Assert.Contains(e.StatusCode, new[] { StatusCode.Unavailable, StatusCode.Internal });
    }

    [Fact]
    public async Task Operations_NoEtcdConnection_UnavailableNoQuorum()
    {
        using var admin = Admin(_ca);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await Client(admin).ListNodesAsync(new ListNodesRequest(), deadline: Deadline()));
        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
        Assert.Equal(ControlPlaneException.NoQuorumMessage, e.Status.Detail);
    }

    [Fact]
    public async Task RevokeNode_Registered_RevokedAndAudited()
    {
        await StartEtcdAsync();
        await new NodeRegistry(_connection!).RegisterAsync(Record("worker-0", RegistryRole.Worker));
        using var admin = Admin(_ca);
        var client = Client(admin);

        Assert.True((await client.RevokeNodeAsync(new RevokeNodeRequest { Name = "worker-0" }, deadline: Deadline())).Changed);
        Assert.False((await client.RevokeNodeAsync(new RevokeNodeRequest { Name = "worker-0" }, deadline: Deadline())).Changed);

        Assert.True((await new NodeRegistry(_connection!).GetAsync("worker-0"))!.Revoked);
        var listed = Assert.Single((await client.ListNodesAsync(new ListNodesRequest(), deadline: Deadline())).Nodes);
        Assert.True(listed.Revoked);
        var (entries, verification) = await AuditAsync(client);
        var entry = Assert.Single(entries);
        Assert.Equal(("Revocation", "worker-0"), (entry.Kind, entry.Node));
        Assert.Contains("admin", entry.Detail, StringComparison.Ordinal);
        Assert.True(verification.Intact);
    }

    [Fact]
    public async Task RevokeNode_UnknownNode_NotFoundNothingWritten()
    {
        await StartEtcdAsync();
        using var admin = Admin(_ca);
        var client = Client(admin);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await client.RevokeNodeAsync(new RevokeNodeRequest { Name = "worker-9" }, deadline: Deadline()));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        Assert.Equal("node worker-9 is not registered", e.Status.Detail);
        var bad = await Assert.ThrowsAsync<RpcException>(async () => await client.RevokeNodeAsync(new RevokeNodeRequest { Name = "../x" }, deadline: Deadline()));
        Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);
        Assert.Empty((await AuditAsync(client)).Entries);
    }

    [Fact]
    public async Task RemoveNode_LastMember_FailedPreconditionNothingChanged()
    {
        await StartEtcdAsync();
        await new NodeRegistry(_connection!).RegisterAsync(Record("cp0", RegistryRole.ControlPlane));
        using var admin = Admin(_ca);
        var client = Client(admin);
        var e = await Assert.ThrowsAsync<RpcException>(async () => await client.RemoveNodeAsync(new RemoveNodeRequest { Name = "cp0" }, deadline: Deadline()));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains("last etcd member", e.Status.Detail, StringComparison.Ordinal);
        Assert.NotNull(await new NodeRegistry(_connection!).GetAsync("cp0"));
        Assert.Single(await new EtcdMembership(_connection!).ListAsync());
        Assert.Empty((await AuditAsync(client)).Entries);
    }

    [Fact]
    public async Task RemoveNode_Worker_RemovedFromRegistryAndAudited()
    {
        await StartEtcdAsync();
        await new NodeRegistry(_connection!).RegisterAsync(Record("worker-1", RegistryRole.Worker));
        using var admin = Admin(_ca);
        var client = Client(admin);
        var response = await client.RemoveNodeAsync(new RemoveNodeRequest { Name = "worker-1" }, deadline: Deadline());
        Assert.False(response.WasMember);
        Assert.Null(await new NodeRegistry(_connection!).GetAsync("worker-1"));
        var entry = Assert.Single((await AuditAsync(client)).Entries);
        Assert.Equal(("MembershipChange", "worker-1"), (entry.Kind, entry.Node));
        var again = await Assert.ThrowsAsync<RpcException>(async () => await client.RemoveNodeAsync(new RemoveNodeRequest { Name = "worker-1" }, deadline: Deadline()));
        Assert.Equal(StatusCode.NotFound, again.StatusCode);
    }

    [Fact]
    public async Task RemoveNode_RevokedWorker_FailedPreconditionRevocationKept()
    {
        // Attack: remove erased the revoked record, and the gate registers an unknown name on its first join, so the
        // same certified identity could join again and receive the same derived disk key.
        await StartEtcdAsync();
        await new NodeRegistry(_connection!).RegisterAsync(Record("worker-1", RegistryRole.Worker));
        using var admin = Admin(_ca);
        var client = Client(admin);
        await client.RevokeNodeAsync(new RevokeNodeRequest { Name = "worker-1" }, deadline: Deadline());

        var e = await Assert.ThrowsAsync<RpcException>(async () => await client.RemoveNodeAsync(new RemoveNodeRequest { Name = "worker-1" }, deadline: Deadline()));

        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains("revoked", e.Status.Detail, StringComparison.Ordinal);
        Assert.True((await new NodeRegistry(_connection!).GetAsync("worker-1"))!.Revoked);
        Assert.Single((await AuditAsync(client)).Entries);
    }

    [Fact]
    public async Task RemoveNode_RevokedBetweenReadAndDelete_RevocationKept()
    {
        // Attack (a race, no timing): `node remove` read the record before a concurrent `node revoke` landed, then
        // deleted it unconditionally; the revocation (its deny entry) was gone and the revoked identity could join
        // afresh and receive its disk key. The delete must compare the record's mod revision.
        await StartEtcdAsync();
        var registry = new NodeRegistry(_connection!);
        await registry.RegisterAsync(Record("worker-1", RegistryRole.Worker));
        using var admin = Admin(_ca);
        var client = Client(admin);
        _service.BeforeRegistryRemove = (name, ct) => registry.RevokeAsync(name, DateTimeOffset.UtcNow, ct);

        var e = await Assert.ThrowsAsync<RpcException>(async () => await client.RemoveNodeAsync(new RemoveNodeRequest { Name = "worker-1" }, deadline: Deadline()));

        Assert.Equal((StatusCode.Aborted, "worker-1 changed while being removed (revoked?); nothing removed"), (e.StatusCode, e.Status.Detail));
        Assert.True((await registry.GetAsync("worker-1"))?.Revoked, "the revoked record must survive the remove");
        // The chain must not end on a removal that did not happen.
        var last = (await new AuditLog(_connection!).ReadAsync().ToListAsync())[^1];
        Assert.Equal((AuditKind.MembershipChange, "worker-1"), (last.Kind, last.Node));
        Assert.EndsWith("abandoned: worker-1 changed while being removed (revoked?); nothing removed", last.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Audit_EditedEntry_NamesBrokenLink()
    {
        await StartEtcdAsync();
        var log = new AuditLog(_connection!);
        await log.AppendAsync(AuditKind.Release, "worker-0", "join");
        await log.AppendAsync(AuditKind.Release, "worker-1", "join");
        await log.AppendAsync(AuditKind.Release, "worker-2", "join");
        // The attacker with etcd write access rewrites entry 2's detail in place.
        var key = "/asterism/audit/entries/" + 2.ToString("D20", System.Globalization.CultureInfo.InvariantCulture);
        var stored = await _connection!.CallAsync((c, d, ct) => c.GetAsync(new RangeRequest { Key = Google.Protobuf.ByteString.CopyFromUtf8(key) }, deadline: d, cancellationToken: ct), CancellationToken.None);
        var edited = stored.Kvs[0].Value.ToStringUtf8().Replace("\"join\"", "\"nothing happened\"", StringComparison.Ordinal);
        await _connection.CallAsync((c, d, ct) => c.PutAsync(new PutRequest { Key = Google.Protobuf.ByteString.CopyFromUtf8(key), Value = Google.Protobuf.ByteString.CopyFromUtf8(edited) }, deadline: d, cancellationToken: ct), CancellationToken.None);

        using var admin = Admin(_ca);
        var (entries, verification) = await AuditAsync(Client(admin));
        Assert.Equal(3, entries.Count);
        Assert.False(verification.Intact);
        Assert.Equal(2, verification.BrokenAt);
        Assert.Contains("entry 2", verification.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Audit_Since_OnlyLaterEntries()
    {
        await StartEtcdAsync();
        var log = new AuditLog(_connection!);
        var first = await log.AppendAsync(AuditKind.Release, "worker-0", "join");
        using var admin = Admin(_ca);
        var client = Client(admin);
        var (entries, verification) = await AuditAsync(client, first.Time.ToUnixTimeMilliseconds() + 1);
        Assert.Empty(entries);
        Assert.True(verification.Intact);
        Assert.Equal(1, verification.Entries);
    }

    private async Task StartEtcdAsync()
    {
        var tls = _ca.IssueMember(Path.Combine(_root, "etcd-tls"), "cp0", _address);
        _etcd = await EtcdMember.StartAsync(new EtcdMemberOptions
        {
            Name = "cp0",
            Address = _address,
            DataDirectory = Path.Combine(_root, "etcd-data"),
            Tls = tls,
            State = EtcdClusterState.New,
            ClusterToken = "clusterapi-test-" + _address,
        });
        _connection = new EtcdConnection([_etcd.Options.ClientUrl], _ca.IssueClient(Path.Combine(_root, "etcd-client"), "cp0"));
        _access.Attach(_connection);
    }

    private static NodeRecord Record(string name, RegistryRole role) =>
        new(name, role, Guid.NewGuid(), [0x30, 0x00], DateTimeOffset.UtcNow);

    private static async Task<(List<Protocol.ClusterApi.AuditEntry> Entries, Verification Verification)> AuditAsync(ClusterApiGrpc.ClusterApiClient client, long since = 0)
    {
        var entries = new List<Protocol.ClusterApi.AuditEntry>();
        Verification? verification = null;
        using var call = client.Audit(new AuditRequest { SinceUnixMs = since }, deadline: Deadline());
        await foreach (var m in call.ResponseStream.ReadAllAsync())
        {
            if (m.ItemCase == AuditMessage.ItemOneofCase.Entry)
            {
                entries.Add(m.Entry);
            }
            else
            {
                verification = m.Verification;
            }
        }
        return (entries, verification ?? throw new InvalidOperationException("no verification message"));
    }

    /// <summary>An admin credential as init makes it: the key here, only the request goes to the CA.</summary>
    private static X509Certificate2 Admin(ClusterCa ca)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = new CertificateRequest("CN=admin", key, HashAlgorithmName.SHA256).CreateSigningRequest();
        using var certificate = ca.IssueAdmin(csr, "admin");
        using var withKey = certificate.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    private ClusterApiGrpc.ClusterApiClient Client(X509Certificate2? clientCertificate, X509Certificate2? trust = null)
    {
        var ca = trust ?? _ca.Certificate;
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromSeconds(5),
            SslOptions = new SslClientAuthenticationOptions
            {
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                ClientCertificates = clientCertificate is null ? null : new X509CertificateCollection { clientCertificate },
                RemoteCertificateValidationCallback = (_, certificate, _, _) => ClusterApiTls.ChainsTo(certificate, ca, ClusterApiTls.ServerAuthOid),
            },
        };
        var channel = GrpcChannel.ForAddress($"https://{_address}:{Ports.ClusterApi}", new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
        return new ClusterApiGrpc.ClusterApiClient(channel);
    }

    private static DateTime Deadline() => DateTime.UtcNow.AddSeconds(30);
}
