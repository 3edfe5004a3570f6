using Asterism.Attestation;
using Asterism.ControlPlane;
using Asterism.Crypto;
using Asterism.JoinService;
using Asterism.Logging;
using Asterism.Node.Services;
using Asterism.Protocol;
using Asterism.Protocol.Init;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Boot;

/// <summary>
/// init.API on the init target (control-plane-0, server-attesting aTLS): takes the master secret, measurement salt
/// and attestation policy from the CLI, initializes the disk, and answers with the cluster ID. Only a call carrying
/// the init secret whose SHA-256 the provider gave this node is taken; any other caller gets PermissionDenied before
/// anything in the request is looked at. When the request carries an admin certificate request, the answer carries the
/// cluster API's admin certificate, signed with the cluster CA on this node's state filesystem.
/// </summary>
public sealed class InitService(FirstBootSetup setup, string diskUuid, byte[] initSecretHash, ILoggerFactory loggers) : API.APIBase
{
    /// <summary>The common name of the admin certificate issued at init.</summary>
    public const string AdminName = "admin";

    private readonly ILogger _log = loggers.CreateLogger(NodeLog.InitServer.Category);

    public override async Task<InitResponse> Init(InitRequest request, ServerCallContext context)
    {
        NodeLog.InitServer.ReceivedCall(_log, context.Peer, request.ClusterName);
        if (!InitSecretMatches(request))
        {
            NodeLog.InitServer.RefusedCall(_log, context.Peer, "init secret missing or wrong");
            throw new RpcException(new Grpc.Core.Status(StatusCode.PermissionDenied, "init secret refused"));
        }
        if (setup.IsDone)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition, "node is already part of a cluster"));
        }
        if (request.MeasurementSalt.Length != KeyDerivation.MeasurementSaltLength)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "measurement salt must be 32 bytes"));
        }
        if (!request.AdminCsr.IsEmpty)
        {
            // Checked before anything changes: a bad request must not leave an initialized node without a credential.
            try
            {
                ClusterCa.ValidateAdminRequest(request.AdminCsr.Span);
            }
            catch (ControlPlaneException ex)
            {
                NodeLog.InitServer.RefusedCall(_log, context.Peer, ex.Message);
                throw new RpcException(new Status(StatusCode.InvalidArgument, ex.Message));
            }
        }
        MasterSecret master;
        AttestationPolicy policy;
        try
        {
            master = MasterSecret.FromBytes(request.MasterKey.Span, request.MasterSalt.Span);
        }
        catch (MasterSecretException ex)
        {
            NodeLog.InitServer.RefusedCall(_log, context.Peer, ex.Message);
            throw new RpcException(new Grpc.Core.Status(StatusCode.InvalidArgument, "invalid master secret"));
        }
        finally
        {
            SecretFields.Zero(request.MasterKey, request.MasterSalt);
        }
        try
        {
            policy = AttestationPolicy.FromJson(request.AttestationConfig.Span);
            policy.EnsureUsable();
        }
        catch (MeasurementsFormatException ex)
        {
            master.Dispose();
            NodeLog.InitServer.RefusedCall(_log, context.Peer, ex.Message);
            throw new RpcException(new Grpc.Core.Status(StatusCode.InvalidArgument, "invalid attestation config"));
        }
        var salt = request.MeasurementSalt.ToByteArray();
        var secrets = new ClusterSecrets(master, salt, policy);
        using var keys = new FirstBootKeys
        {
            DiskKey = KeyDerivation.DeriveDiskKey(master, diskUuid),
            MeasurementSecret = KeyDerivation.DeriveMeasurementSecret(master),
            MeasurementSalt = salt,
            ClusterSecrets = secrets,
        };
        FirstBootResult? result;
        try
        {
            result = await setup.ApplyAsync(keys, "init", context.CancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            secrets.Dispose();
            NodeLog.InitServer.Failed(_log, context.Peer, ex.GetType().Name + ": " + ex.Message);
            throw new RpcException(new Grpc.Core.Status(StatusCode.Internal, "initialization failed"));
        }
        if (result is null)
        {
            secrets.Dispose();
            throw new RpcException(new Status(StatusCode.FailedPrecondition, "node is already part of a cluster"));
        }
        var response = new InitResponse { ClusterId = ByteString.CopyFrom(result.State.ClusterId), DiskUuid = diskUuid };
        if (!request.AdminCsr.IsEmpty)
        {
            try
            {
                IssueAdminCredential(result.Directory.Root, request.ClusterName, request.AdminCsr.Span, response);
            }
            catch (Exception ex) when (ex is ControlPlaneException or IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
            {
                NodeLog.InitServer.Failed(_log, context.Peer, ex.GetType().Name + ": " + ex.Message);
                throw new RpcException(new Status(StatusCode.Internal, "the node is initialized but the admin credential could not be issued"));
            }
        }
        NodeLog.InitServer.Succeeded(_log, Convert.ToHexStringLower(result.State.ClusterId));
        return response;
    }

    /// <summary>
    /// Signs the CLI's admin key with the cluster CA on the state filesystem (made there now if the etcd wiring has not
    /// made it yet) and answers with the certificate and the CA certificate. The CA key stays on this node.
    /// </summary>
    private void IssueAdminCredential(string stateRoot, string clusterName, ReadOnlySpan<byte> csr, InitResponse response)
    {
        using var ca = ClusterApi.LoadOrCreateClusterCa(stateRoot, string.IsNullOrWhiteSpace(clusterName) ? "asterism" : clusterName);
        using var admin = ca.IssueAdmin(csr, AdminName);
        response.AdminCertificate = ByteString.CopyFrom(admin.RawData);
        response.ClusterCaCertificate = ByteString.CopyFrom(ca.Certificate.RawData);
        NodeLog.ClusterApi.AdminIssued(_log, AdminName, admin.SerialNumber);
    }

    private bool InitSecretMatches(InitRequest request)
    {
        Span<byte> presented = stackalloc byte[32];
        System.Security.Cryptography.SHA256.HashData(request.InitSecret.Span, presented);
        var matches = request.InitSecret.Length == InitSecretFormat.Length
            && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(presented, initSecretHash);
        System.Security.Cryptography.CryptographicOperations.ZeroMemory(System.Runtime.InteropServices.MemoryMarshal.AsMemory(request.InitSecret.Memory).Span);
        return matches;
    }
}
