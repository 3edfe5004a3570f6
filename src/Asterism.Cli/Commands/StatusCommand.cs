using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Asterism.Attestation.Identities;
using Asterism.Cloud;
using Asterism.Protocol;
using Asterism.Protocol.ClusterApi;

namespace Asterism.Cli.Commands;

/// <summary>
/// <c>asterism status</c>: every instance's power state, boot phase (from the node's own boot-status call, not its
/// logs), role and address, plus the cluster API's health; tells the operator when recovery is needed.
/// </summary>
public static class StatusCommand
{
    public sealed record NodeView(string Name, string Role, string Address, string Power, string Phase, DateTimeOffset? WaitingSince, string LastError, int RejoinAttempts, string Variant)
    {
        /// <summary>The identity the provider certified for this instance: role and certificate fingerprint, or why there is none.</summary>
        public string Identity { get; init; } = "";

        /// <summary>A booted control plane's view of the etcd quorum ("etcd: 1 of 3 members up, quorum needs 2"), or "".</summary>
        public string Etcd { get; init; } = "";

        /// <summary>Whether that control plane's etcd member sees a quorum.</summary>
        public bool EtcdHasQuorum { get; init; }
    }

    public sealed record ClusterView(IReadOnlyList<NodeView> Nodes, bool ClusterApiHealthy)
    {
        /// <summary>The one line about a pending master-secret rotation (<see cref="RotationLine"/>), empty when none is pending or the API did not answer.</summary>
        public string Rotation { get; init; } = "";

        /// <summary>What the cluster API said about etcd ("etcd: 2 of 3 members up, quorum needs 2"), empty when it did not answer.</summary>
        public string Quorum { get; init; } = "";

        public IEnumerable<NodeView> WaitingControlPlanes => Nodes.Where(n => n.Role == CloudNames.ControlPlane && n.Phase == BootPhases.WaitingForKey);

        /// <summary>Control-plane nodes wait and no JoinService answers: only the operator can help.</summary>
        public bool RecoveryNeeded => WaitingControlPlanes.Any() && !Nodes.Any(n => n.Role == CloudNames.ControlPlane && n.Phase == BootPhases.Booted);

        /// <summary>
        /// The etcd quorum as the booted control planes see it: one with a quorum wins (its view is current); otherwise
        /// the first one's view, which then says why nobody releases keys. Null when no control plane reports etcd.
        /// </summary>
        public NodeView? EtcdReporter =>
            Nodes.Where(n => n.Etcd.Length > 0).OrderByDescending(n => n.EtcdHasQuorum).FirstOrDefault();
    }

    public static async Task<ClusterView> GatherAsync(LocalCloudClient cloud, CancellationToken cancellationToken) =>
        await GatherAsync(cloud, null, cancellationToken);

    /// <summary>As <see cref="GatherAsync(LocalCloudClient, CancellationToken)"/>, with each node's certified identity read from <paramref name="workspace"/>.</summary>
    public static async Task<ClusterView> GatherAsync(LocalCloudClient cloud, Workspace? workspace, CancellationToken cancellationToken)
    {
        var instances = await cloud.ListAsync(cancellationToken);
        using var authority = workspace is null ? null : AuthorityOf(workspace);
        var views = await Task.WhenAll(instances.Select(async i =>
        {
            var status = i.IsRunning ? await NodeProbe.BootStatusAsync(i.Address, cancellationToken) : null;
            var phase = status?.Phase ?? BootPhases.Booting;
            DateTimeOffset? since = status is { WaitingSinceUnixMs: > 0 } ? DateTimeOffset.FromUnixTimeMilliseconds(status.WaitingSinceUnixMs) : null;
            return new NodeView(i.Name, i.Role, i.Address, i.Power, i.IsRunning ? phase : "-", since, status?.LastError ?? "", status?.RejoinAttempts ?? 0, status?.Variant ?? "")
            {
                Identity = workspace is null ? "" : IdentityOf(workspace, authority, i),
                Etcd = status?.Etcd ?? "",
                EtcdHasQuorum = status?.EtcdHasQuorum ?? false,
            };
        }));
        // The health call needs the admin credential: without a workspace the API counts as unreachable.
        var health = workspace is null ? null : await NodeProbe.ClusterApiHealthAsync(workspace.Directory, cancellationToken);
        return new ClusterView(views, health is not null) { Quorum = health?.Quorum ?? "" };
    }

    private static IdentityAuthority? AuthorityOf(Workspace workspace)
    {
        try
        {
            return Workspace.PolicyOf(workspace.LoadConfig()).CreateIdentityAuthority();
        }
        catch (Exception e) when (e is CliError or Asterism.Attestation.MeasurementsFormatException)
        {
            return null;
        }
    }

    /// <summary>"certified cert:0123456789abcdef" when the node's identity certificate verifies against the config's provider CA for its name and role.</summary>
    private static string IdentityOf(Workspace workspace, IdentityAuthority? authority, InstanceInfo instance)
    {
        if (authority is null)
        {
            return "no provider CA in config";
        }
        var path = IdentityFiles.CertificatePath(workspace.Cloud.NodeDir(instance.Name));
        byte[] der;
        try
        {
            der = IdentityFiles.ReadCertificate(path);
        }
        catch (InvalidDataException)
        {
            return "none";
        }
        using var certificate = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(der);
        var check = authority.Verify(der, certificate.PublicKey.ExportSubjectPublicKeyInfo(), DateTimeOffset.UtcNow);
        if (check.Identity is not { } identity)
        {
            return "invalid: " + check.Error;
        }
        return identity.Name == instance.Name && identity.Role == instance.Role
            ? $"certified cert:{identity.CertificateFingerprint[..16]}"
            : $"invalid: names {identity.Name} ({identity.Role})";
    }

    /// <summary>
    /// "Key rotation 1 -> 2 pending: 1 node(s) still on generation 1: worker-0" while a rotation is pending; empty when
    /// none is.
    /// </summary>
    public static string RotationLine(RotationStatus status)
    {
        ArgumentNullException.ThrowIfNull(status);
        if (status.PendingGeneration == 0)
        {
            return "";
        }
        return status.Behind.Count == 0
            ? $"Key rotation {status.CurrentGeneration} -> {status.PendingGeneration} pending: every node is on generation {status.PendingGeneration}; run 'asterism secret rotate --complete'"
            : $"Key rotation {status.CurrentGeneration} -> {status.PendingGeneration} pending: {status.Behind.Count} node(s) still on generation {status.CurrentGeneration}: {string.Join(", ", status.Behind)}";
    }

    /// <summary>The rotation line from the cluster API; empty when it cannot be asked (no credential, no answer).</summary>
    private static async Task<string> RotationLineAsync(Workspace workspace, CancellationToken cancellationToken)
    {
        try
        {
            using var credential = AdminCredential.Load(workspace.Directory);
            using var client = new ClusterApiClient(credential, TimeSpan.FromSeconds(2));
            return RotationLine(await client.Api.GetRotationAsync(new GetRotationRequest(), deadline: DateTime.UtcNow.AddSeconds(2), cancellationToken: cancellationToken));
        }
        catch (Exception e) when (e is CliError or Grpc.Core.RpcException)
        {
            return "";
        }
    }

    public static Command Create(GlobalOptions global)
    {
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var command = new Command("status", "Show every node's power state, boot phase, role and address, and the cluster API's health") { json };
        command.SetAction(async (result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var workspace = new Workspace(global.WorkspaceOf(result));
            using var cloud = workspace.ConnectProvider();
            var view = await GatherAsync(cloud, workspace, cancellationToken);
            if (view.ClusterApiHealthy)
            {
                // Whenever the API answers, the copy recover relies on while it does not is brought up to date.
                await Recovery.RegistryCopySync.RefreshQuietlyAsync(workspace, result.InvocationConfiguration.Error, cancellationToken);
                view = view with { Rotation = await RotationLineAsync(workspace, cancellationToken) };
            }
            if (result.GetValue(json))
            {
                await stdout.WriteLineAsync(ToJson(view));
                return 0;
            }
            Print(view, stdout);
            return 0;
        });
        return command;
    }

    public static string ToJson(ClusterView view)
    {
        var nodes = new JsonArray();
        foreach (var n in view.Nodes)
        {
            nodes.Add(new JsonObject
            {
                ["name"] = n.Name,
                ["role"] = n.Role,
                ["address"] = n.Address,
                ["power"] = n.Power,
                ["phase"] = n.Power == CloudNames.Running ? n.Phase : null,
                ["waitingSince"] = n.WaitingSince?.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture),
                ["lastError"] = string.IsNullOrEmpty(n.LastError) ? null : n.LastError,
                ["identity"] = string.IsNullOrEmpty(n.Identity) ? null : n.Identity,
            });
        }
        var root = new JsonObject { ["nodes"] = nodes, ["clusterApi"] = view.ClusterApiHealthy ? "healthy" : "unreachable" };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = false });
    }

    public static void Print(ClusterView view, TextWriter stdout)
    {
        var width = Math.Max(4, view.Nodes.Select(n => n.Name.Length).DefaultIfEmpty(4).Max());
        var identityWidth = Math.Max(8, view.Nodes.Select(n => n.Identity.Length).DefaultIfEmpty(8).Max());
        stdout.WriteLine($"{"NAME".PadRight(width)}  {"ROLE",-14} {"ADDRESS",-15} {"POWER",-8} {"IDENTITY".PadRight(identityWidth)}  PHASE");
        foreach (var n in view.Nodes)
        {
            var phase = n.Phase switch
            {
                BootPhases.WaitingForKey => $"waiting for decryption key since {n.WaitingSince?.ToLocalTime():HH:mm:ss}" + (n.LastError.Length > 0 ? $" (last rejoin error: {n.LastError})" : ""),
                _ => n.Phase,
            };
            stdout.WriteLine($"{n.Name.PadRight(width)}  {n.Role,-14} {n.Address,-15} {n.Power,-8} {n.Identity.PadRight(identityWidth)}  {phase}");
        }
        stdout.WriteLine($"Cluster API: {(view.ClusterApiHealthy ? "healthy" : "unreachable")}{(view.EtcdReporter is null && view.Quorum.Length > 0 ? " (" + view.Quorum + ")" : "")}");
        if (view.EtcdReporter is { } etcd)
        {
            // Without a quorum no JoinService releases a key: the waiting nodes need the operator.
            stdout.WriteLine(etcd.EtcdHasQuorum ? etcd.Etcd : $"{etcd.Etcd} — run 'asterism recover'");
        }
        if (view.Rotation.Length > 0)
        {
            stdout.WriteLine(view.Rotation);
        }
        var variant = view.Nodes.Select(n => n.Variant).FirstOrDefault(v => v.Length > 0);
        if (variant is not null)
        {
            stdout.WriteLine($"Attestation variant: {variant}{(variant == "simulated" ? " (software only, not a security boundary)" : "")}");
        }
        if (view.RecoveryNeeded)
        {
            stdout.WriteLine($"Recovery needed: {view.WaitingControlPlanes.Count()} control-plane nodes wait for a decryption key and no control-plane node is up to hand it out. Run 'asterism recover'.");
        }
    }
}
