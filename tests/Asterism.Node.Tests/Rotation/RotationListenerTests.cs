using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Attestation.Simulated;
using Asterism.ControlPlane;
using Asterism.Crypto;
using Asterism.JoinService;
using Asterism.Node.Services;
using Asterism.Protocol;
using Asterism.Protocol.Join;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Node.Tests.Rotation;

/// <summary>
/// The control plane's two aTLS listeners as the node starts them (<see cref="JoinListeners"/>), on a random 127.79.R.S:
/// 30091 serves join.Rotation to running nodes of this cluster only (a node whose PCR 15 is still 0, or another
/// cluster's, fails the handshake), and neither listener serves the other's service.
/// </summary>
public sealed class RotationListenerTests : IAsyncLifetime
{
    private static readonly byte[] ClusterId = SHA256.HashData(Encoding.UTF8.GetBytes("rotation-listener-cluster"));
    private readonly IPAddress _address = new([127, 79, (byte)RandomNumberGenerator.GetInt32(1, 255), (byte)RandomNumberGenerator.GetInt32(2, 255)]);
    private readonly AttestationPolicy _policy = new() { Variant = AttestationVariant.Simulated, Measurements = Measurements.Empty, TrustAnyKey = true };
    private readonly SimulatedAttestationKey _serverKey = SimulatedAttestationKey.Create();
    private readonly SimulatedAttestationKey _clientKey = SimulatedAttestationKey.Create();
    private readonly X509Certificate2 _etcdCa = SelfSigned();
    private ClusterSecrets _secrets = null!;
    private EtcdConnection _connection = null!;
    private WebApplication _join = null!;
    private WebApplication _rotation = null!;

    public async Task InitializeAsync()
    {
        _secrets = new ClusterSecrets(MasterSecret.Generate(), new byte[KeyDerivation.MeasurementSaltLength], _policy);
        // No etcd behind it: every call that passes the handshake and the identity check ends at the registry.
        _connection = new EtcdConnection([new Uri("https://127.0.0.1:1")], null, _etcdCa);
        var serverPcrs = new SimulatedPcrBank();
        serverPcrs.MeasureEvent(Measurements.ClusterIdIndex, ClusterId);
        var issuer = new SimulatedIssuer(_serverKey, serverPcrs);
        _join = await JoinListeners.StartJoinServiceAsync(_address, Ports.JoinService, issuer, _secrets, null, NullLoggerFactory.Instance, CancellationToken.None);
        var gate = new RotationGate(_connection, _secrets, ClusterId, NullLoggerFactory.Instance);
        _rotation = await JoinListeners.StartRotationAsync(_address, Ports.Rotation, issuer, _policy, ClusterId, gate, NullLoggerFactory.Instance, CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await Listeners.StopAsync(_rotation);
        await Listeners.StopAsync(_join);
        _connection.Dispose();
        _secrets.Dispose();
        _serverKey.Dispose();
        _clientKey.Dispose();
        _etcdCa.Dispose();
    }

    [Fact]
    public async Task RotateKey_RunningNodeOfThisCluster_PassesTheHandshakeAndReachesTheService()
    {
        using var channel = Channel(Ports.Rotation, Running(ClusterId));

        var e = await Assert.ThrowsAsync<RpcException>(() => new Protocol.Join.Rotation.RotationClient(channel).RotateKeyAsync(new RotateKeyRequest()).ResponseAsync);

        // The service answered: the handshake under the running-node policy passed; this test peer has no certified identity.
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        Assert.Equal("a certified node identity is required", e.Status.Detail);
    }

    [Fact]
    public async Task RotateKey_FreshNodePcr15Zero_RefusedInTheHandshake()
    {
        using var channel = Channel(Ports.Rotation, new SimulatedPcrBank());

        var e = await Assert.ThrowsAsync<RpcException>(() => new Protocol.Join.Rotation.RotationClient(channel).RotateKeyAsync(new RotateKeyRequest()).ResponseAsync);

        AssertHandshakeRefused(e);
    }

    [Fact]
    public async Task RotateKey_RunningNodeOfAnotherCluster_RefusedInTheHandshake()
    {
        var other = (byte[])ClusterId.Clone();
        other[0] ^= 1;
        using var channel = Channel(Ports.Rotation, Running(other));

        var e = await Assert.ThrowsAsync<RpcException>(() => new Protocol.Join.Rotation.RotationClient(channel).RotateKeyAsync(new RotateKeyRequest()).ResponseAsync);

        AssertHandshakeRefused(e);
    }

    [Fact]
    public async Task IssueRejoinTicket_OnTheRotationListener_Unimplemented()
    {
        using var channel = Channel(Ports.Rotation, Running(ClusterId));

        var e = await Assert.ThrowsAsync<RpcException>(() => new API.APIClient(channel).IssueRejoinTicketAsync(new IssueRejoinTicketRequest()).ResponseAsync);

        Assert.Equal(StatusCode.Unimplemented, e.StatusCode);
    }

    [Fact]
    public async Task RotateKey_OnTheJoinServiceListener_Unimplemented()
    {
        // A fresh node passes the 30090 handshake (PCR 15 = 0) but finds no rotation service there.
        using var channel = Channel(Ports.JoinService, new SimulatedPcrBank());

        var e = await Assert.ThrowsAsync<RpcException>(() => new Protocol.Join.Rotation.RotationClient(channel).RotateKeyAsync(new RotateKeyRequest()).ResponseAsync);

        Assert.Equal(StatusCode.Unimplemented, e.StatusCode);
    }

    [Fact]
    public async Task IssueRejoinTicket_RunningNodeOnTheJoinServiceListener_RefusedInTheHandshake()
    {
        using var channel = Channel(Ports.JoinService, Running(ClusterId));

        var e = await Assert.ThrowsAsync<RpcException>(() => new API.APIClient(channel).IssueRejoinTicketAsync(new IssueRejoinTicketRequest()).ResponseAsync);

        AssertHandshakeRefused(e);
    }

    /// <summary>
    /// The server closed the connection in the handshake: the client sees Unavailable or Internal (depending on when the
    /// close lands), never an answer of a service.
    /// </summary>
    private static void AssertHandshakeRefused(RpcException e) =>
        Assert.True(e.StatusCode is StatusCode.Unavailable or StatusCode.Internal, $"{e.StatusCode}: {e.Status.Detail}");

    private static SimulatedPcrBank Running(byte[] clusterId)
    {
        var pcrs = new SimulatedPcrBank();
        pcrs.MeasureEvent(Measurements.ClusterIdIndex, clusterId);
        return pcrs;
    }

    private GrpcChannel Channel(int port, SimulatedPcrBank clientPcrs)
    {
        var handler = AtlsClient.CreateMutualHandler(new SimulatedIssuer(_clientKey, clientPcrs), _policy.CreateValidator(), new AtlsClientOptions());
        return GrpcChannel.ForAddress($"https://{_address}:{port}", new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
    }

    private static X509Certificate2 SelfSigned()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=test etcd ca", key, HashAlgorithmName.SHA256);
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
    }
}
