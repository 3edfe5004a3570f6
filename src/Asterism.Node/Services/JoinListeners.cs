using System.Net;
using Asterism.Atls;
using Asterism.Attestation;
using Asterism.JoinService;
using Asterism.Protocol;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Services;

/// <summary>
/// The control plane's two client-attesting aTLS listeners, each with its own policy and its own gRPC service, so a
/// handshake judged by one policy can never reach the other's service:
/// <list type="bullet">
/// <item><see cref="Ports.JoinService"/>: join.API (join and rejoin tickets) under <see cref="AttestationPolicy.ForKeyRelease"/>
/// — PCR 15 must be 0, a node without keys in this boot.</item>
/// <item><see cref="Ports.Rotation"/>: join.Rotation under <see cref="AttestationPolicy.ForRunningNode"/> — PCR 15 must be
/// this cluster's running-node value, a node that has its keys.</item>
/// </list>
/// </summary>
public static class JoinListeners
{
    /// <summary>join.API on <paramref name="port"/> (the node's is <see cref="Ports.JoinService"/>).</summary>
    public static Task<WebApplication> StartJoinServiceAsync(IPAddress address, int port, IAttestationIssuer issuer, ClusterSecrets secrets, IKeyReleaseGate? gate, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(secrets);
        var validator = secrets.Policy.ForKeyRelease().CreateValidator(loggers);
        return Listeners.StartAsync(address, port, loggers, JoinServiceLog.Category,
            listen => listen.UseAtlsMutual(issuer, validator, o => o.LoggerFactory = loggers),
            services => services.AddSingleton(new JoinApiService(secrets, loggers, gate)),
            app => app.MapGrpcService<JoinApiService>(),
            cancellationToken);
    }

    /// <summary>
    /// join.Rotation on <paramref name="port"/> (the node's is <see cref="Ports.Rotation"/>): the handshake is validated
    /// under <paramref name="policy"/>'s running-node form for <paramref name="clusterId"/>; the gate checks PCR 15 again.
    /// </summary>
    public static Task<WebApplication> StartRotationAsync(IPAddress address, int port, IAttestationIssuer issuer, AttestationPolicy policy, byte[] clusterId, RotationGate gate, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(policy);
        var validator = policy.ForRunningNode(clusterId).CreateValidator(loggers);
        return Listeners.StartAsync(address, port, loggers, JoinServiceLog.Category,
            listen => listen.UseAtlsMutual(issuer, validator, o => o.LoggerFactory = loggers),
            services => services.AddSingleton(new RotationApiService(gate, loggers)),
            app => app.MapGrpcService<RotationApiService>(),
            cancellationToken);
    }
}
