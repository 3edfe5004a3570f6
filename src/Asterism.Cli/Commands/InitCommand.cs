using System.CommandLine;
using System.Security.Cryptography;
using Asterism.Atls;
using Asterism.Attestation.Identities;
using Asterism.Cli.Recovery;
using Asterism.Crypto;
using Asterism.Protocol;
using Asterism.Protocol.Init;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace Asterism.Cli.Commands;

/// <summary>
/// <c>asterism init</c>: makes the master secret (file mode 0600), initializes the first control-plane node over
/// server-attesting aTLS, waits until every node has joined, and records the cluster values in the state file. It also
/// makes the cluster API's admin key and writes the admin credential control-plane-0 signed (<see cref="AdminCredential"/>).
/// </summary>
public static class InitCommand
{
    public static Command Create(GlobalOptions global)
    {
        var timeout = new Option<string>("--timeout") { Description = "How long to wait for every node to join", DefaultValueFactory = _ => "120s" };
        var shareOptions = new ShareOptions();
        var command = new Command("init", "Initialize the cluster: master secret (or, with --shares, only its k-of-n shares), first control-plane node, wait for every node to join") { timeout };
        shareOptions.AddTo(command, required: false);
        command.SetAction(async (result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var stderr = result.InvocationConfiguration.Error;
            var workspace = new Workspace(global.WorkspaceOf(result));
            workspace.RequireCluster();
            var state = workspace.LoadState();
            if (state.IsInitialized)
            {
                throw new CliError($"the cluster in {workspace.Directory} is already initialized (cluster ID {state.ClusterValues.ClusterId})");
            }
            // Share problems are reported before anything else is read, and long before anything is written.
            var shareRequest = shareOptions.RequestOf(result, workspace);
            if (shareRequest is not null)
            {
                ShareFiles.CheckOutput(shareRequest);
                if (File.Exists(workspace.MasterSecretPath))
                {
                    throw new CliError($"--shares: the master secret file \"{workspace.MasterSecretPath}\" exists; run 'asterism init' without --shares and split it with 'asterism secret split', or move it away");
                }
            }
            var waitTimeout = Asterism.Config.Durations.Parse(result.GetValue(timeout)!, "--timeout");
            var config = workspace.LoadConfig();
            var policy = Workspace.PolicyOf(config);
            foreach (var warning in Workspace.PolicyWarnings(policy))
            {
                await stderr.WriteLineAsync("Warning: " + warning);
            }
            var initSecret = InitSecret.Load(workspace.InitSecretPath);
            using var authority = policy.CreateIdentityAuthority()
                ?? throw new CliError($"{Asterism.Config.ClusterConfig.FileName}: attestation.providerCa is missing; init needs it to know which node it talks to");
            using var cloud = workspace.ConnectProvider();
            var instances = await cloud.ListAsync(cancellationToken);
            var first = instances.FirstOrDefault(i => i.IsControlPlane) ?? throw new CliError("the cluster has no control-plane node");
            var progress = Progress.For(stderr);

            // The secret is on disk before any node sees it. A retried init (the cluster is not initialized yet)
            // reuses an existing file instead of overwriting it: a node may already hold that secret.
            MasterSecret master;
            var salt = RandomNumberGenerator.GetBytes(KeyDerivation.MeasurementSaltLength);
            string? sharedClusterId = null;
            if (shareRequest is not null)
            {
                // Only the shares reach the disk. The cluster ID the node will derive is known now (HKDF of the new
                // secret and the salt we send), so the shares carry it before the node ever sees the secret.
                master = MasterSecret.Generate();
                using var measurementSecret = KeyDerivation.DeriveMeasurementSecret(master);
                sharedClusterId = Convert.ToHexStringLower(KeyDerivation.DeriveClusterId(measurementSecret.Span, salt));
                try
                {
                    var files = ShareFiles.Write(master, sharedClusterId, shareRequest);
                    SecretCommand.WriteSplitReport(stdout, files, shareRequest);
                }
                catch
                {
                    master.Dispose();
                    throw;
                }
            }
            else if (File.Exists(workspace.MasterSecretPath))
            {
                master = Workspace.LoadMasterSecret(workspace.MasterSecretPath);
                await stdout.WriteLineAsync($"Using the existing master secret \"{workspace.MasterSecretPath}\"");
            }
            else
            {
                master = MasterSecret.Generate();
                master.Save(workspace.MasterSecretPath);
                await stdout.WriteLineAsync($"Your Asterism master secret was successfully written to \"{workspace.MasterSecretPath}\"");
            }
            using var masterOwner = master;
            using var loggers = CliLogging.Create(stderr, result.GetValue(global.Debug));
            // Nothing is sent until control-plane-0 proved it is the certified instance we dialed, running the expected software.
            var validator = new ExpectedPeerValidator(policy.ForKeyRelease().CreateValidator(loggers),
                ExpectedPeerValidator.Identity(first.Name, NodeIdentity.ControlPlaneRole), loggers.CreateLogger("attestation"));
            progress.Report($"Initializing {first.Name} ({first.Address})...");
            // The admin key is made here and stays in the workspace; control-plane-0 signs its request with the cluster CA.
            var (adminKey, adminRequest) = AdminCredential.NewRequest();
            using var adminKeyOwner = adminKey;
            InitResponse response;
            try
            {
                response = await CallInitAsync(first.Address, validator, master, salt, initSecret, policy, state.Infrastructure.Name, adminRequest, loggers, waitTimeout, cancellationToken);
            }
            finally
            {
                CryptographicOperations.ZeroMemory(initSecret);
            }
            var record = new NodeRecord([.. instances.Select(i => new RecordedNode(i.Name, i.Role, NodeIdentity.DiskUuidFor(authority.Fingerprint, i.Name)))]);
            if (record.Find(first.Name)?.DiskUuid != response.DiskUuid)
            {
                throw new CliError($"{first.Name} reported disk {response.DiskUuid}, not the one its certified identity owns; refusing to record it");
            }
            record.Save(workspace.NodeRecordPath, master);
            state.ClusterValues.ClusterId = Convert.ToHexStringLower(response.ClusterId.Span);
            if (sharedClusterId is not null && sharedClusterId != state.ClusterValues.ClusterId)
            {
                // Cannot happen while node and CLI derive the ID alike; if it did, the shares would be refused by recover.
                throw new CliError($"{first.Name} reports cluster ID {state.ClusterValues.ClusterId}, not {sharedClusterId} the shares were written for; the shares do not fit this cluster");
            }
            state.ClusterValues.MeasurementSalt = Convert.ToHexStringLower(salt);
            state.Save(workspace.StatePath);
            await stdout.WriteLineAsync($"Initialized {first.Name}; cluster ID {state.ClusterValues.ClusterId}");
            AdminCredential.Write(workspace.Directory, $"{cloud.State.LoadBalancer}:{Ports.ClusterApi}", response.ClusterCaCertificate.ToByteArray(), response.AdminCertificate.ToByteArray(), adminKey);
            await stdout.WriteLineAsync($"The cluster API admin credential was written to \"{AdminCredential.PathIn(workspace.Directory)}\"");
            // The first registry copy, while the secret is in memory (with --shares it never is again): its MAC key is
            // stored next to the credential so later commands can keep the copy current without the secret.
            var copies = new RegistryCopyStore(workspace.Directory);
            copies.Initialize(master, state.ClusterValues.ClusterId!, record.Nodes.Select(n => new CopiedNode(n.Name, n.Role, n.DiskUuid, false, 0)));
            progress.Report("Waiting for every node to join...");
            var nodes = instances.Select(i => (i.Name, i.Address)).ToList();
            // A node that was running when init began and is stopped now exited (or was powered off): it will not boot
            // by itself, since the provider never restarts a node. One stopped before init may still be started.
            var runningAtStart = instances.Where(i => i.IsRunning).Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
            async Task<string?> Stopped(CancellationToken ct) =>
                (await cloud.ListAsync(ct)).FirstOrDefault(i => !i.IsRunning && runningAtStart.Contains(i.Name)) is { } stopped
                    ? $"{stopped.Name} stopped while booting; see 'asterism logs {stopped.Name}'"
                    : null;
            if (!await NodeProbe.WaitForPhaseAsync(nodes, BootPhases.Booted, waitTimeout, progress, cancellationToken, Stopped))
            {
                throw new CliError($"not every node booted within {waitTimeout.TotalSeconds:0} s; see 'asterism status' and 'asterism logs NODE'");
            }
            await stdout.WriteLineAsync($"All {nodes.Count} nodes joined the cluster {state.Infrastructure.Name}.");
            await RegistryCopySync.RefreshQuietlyAsync(workspace, stderr, cancellationToken);
            return 0;
        });
        return command;
    }

    /// <summary>The shortest time init waits for the first control plane, whatever --timeout says.</summary>
    private static readonly TimeSpan MinimumInitTimeout = TimeSpan.FromSeconds(30);

    private static async Task<InitResponse> CallInitAsync(string address, Asterism.Attestation.IAttestationValidator validator, MasterSecret master,
        byte[] salt, byte[] initSecret, Asterism.Attestation.AttestationPolicy policy, string clusterName, byte[] adminRequest, Microsoft.Extensions.Logging.ILoggerFactory loggers,
        TimeSpan timeout, CancellationToken cancellationToken)
    {
        // --timeout bounds the init call too: a node that answers slowly (a loaded machine, a slow TPM) must not be
        // abandoned halfway, since a node that finished init after the CLI gave up refuses a second init.
        var deadline = DateTime.UtcNow + (timeout < MinimumInitTimeout ? MinimumInitTimeout : timeout);
        var key = master.Key.ToArray();
        var masterSalt = master.Salt.ToArray();
        var secret = initSecret.ToArray();
        try
        {
            return await CallInitLoopAsync(address, validator, key, masterSalt, salt, secret, policy, clusterName, adminRequest, loggers, deadline, cancellationToken);
        }
        finally
        {
            // The request wrapped these buffers without copies: zero them once the calls are over.
            CryptographicOperations.ZeroMemory(key);
            CryptographicOperations.ZeroMemory(masterSalt);
            CryptographicOperations.ZeroMemory(secret);
        }
    }

    private static async Task<InitResponse> CallInitLoopAsync(string address, Asterism.Attestation.IAttestationValidator validator, byte[] key, byte[] masterSalt,
        byte[] salt, byte[] initSecret, Asterism.Attestation.AttestationPolicy policy, string clusterName, byte[] adminRequest, ILoggerFactory loggers, DateTime deadline, CancellationToken cancellationToken)
    {
        while (true)
        {
            using var handler = AtlsClient.CreateHandler(validator, new AtlsClientOptions { LoggerFactory = loggers });
            using var channel = GrpcChannel.ForAddress($"https://{address}:{Ports.Init}", new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = false });
            var client = new API.APIClient(channel);
            try
            {
                return await client.InitAsync(new InitRequest
                {
                    MasterKey = SecretFields.Wrap(key),
                    MasterSalt = SecretFields.Wrap(masterSalt),
                    MeasurementSalt = ByteString.CopyFrom(salt),
                    AttestationConfig = ByteString.CopyFrom(policy.ToJson()),
                    ClusterName = clusterName,
                    InitSecret = SecretFields.Wrap(initSecret),
                    AdminCsr = ByteString.CopyFrom(adminRequest),
                }, deadline: deadline, cancellationToken: cancellationToken);
            }
            catch (Exception ex) when (AtlsRefusedException.FindIn(ex) is { } refused)
            {
                throw new CliError($"node {address} failed attestation: {refused.Message}");
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable && DateTime.UtcNow < deadline)
            {
                // The node is still starting: its init port is not open yet.
                await Task.Delay(250, cancellationToken);
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.DeadlineExceeded)
            {
                throw new CliError($"node {address} did not complete init before the deadline (--timeout); see 'asterism logs' for the node, and retry with a longer --timeout");
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.PermissionDenied)
            {
                throw new CliError($"node {address} refused the init secret of this workspace ({ex.Status.Detail}); was the cluster created from this workspace?");
            }
            catch (RpcException ex)
            {
                throw new CliError($"init of node {address} failed: {ex.StatusCode}: {ex.Status.Detail}");
            }
        }
    }
}
