using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Reflection;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Attestation.Identities;
using Asterism.Attestation.Simulated;
using Asterism.Cloud;
using Asterism.EndToEnd.Tests.Infrastructure;
using Asterism.Protocol;
using Asterism.Protocol.Join;
using Asterism.Tests;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Asterism.EndToEnd.Tests.Security;

/// <summary>
/// A `simulated` issuer of the attacker's own making: its own P-256 key signs a quote over exactly the PCR values it
/// chooses (the expected ones from asterism-conf.yaml), with any identity certificate it likes (none, self-signed, or
/// from a CA of its own). Everything but the key's certification is as a real node's document.
/// </summary>
public sealed class ForgedIssuer(SimulatedAttestationKey key, byte[][] pcrs, byte[]? identityCertificate) : IAttestationIssuer
{
    public AttestationVariant Variant => AttestationVariant.Simulated;

    public ValueTask<byte[]> IssueAsync(ReadOnlyMemory<byte> userData, ReadOnlyMemory<byte> nonce, CancellationToken cancellationToken)
    {
        var signature = key.Sign(SimulatedQuote.SignedData(pcrs, userData.Span, nonce.Span));
        var quote = new SimulatedQuote(key.PublicKeySpki, pcrs, signature);
        return ValueTask.FromResult(new AttestationDocument(Variant.Name, userData.Span, nonce.Span, identityCertificate ?? [], quote.Encode()).Encode());
    }
}

/// <summary>An attestation key the attacker made, with the identity certificates it can make for it.</summary>
public sealed class ForgedKey : IDisposable
{
    private readonly ECDsa _ecdsa;

    private ForgedKey(string directory)
    {
        _ecdsa = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Directory.CreateDirectory(directory);
        KeyPath = Path.Combine(directory, SimulatedAttestationKey.FileName);
        IdentityFiles.WritePrivateFile(KeyPath, Encoding.ASCII.GetBytes(_ecdsa.ExportPkcs8PrivateKeyPem()));
        Key = SimulatedAttestationKey.Load(KeyPath);
    }

    public SimulatedAttestationKey Key { get; }

    /// <summary>The PKCS#8 PEM file (0600) holding the key, as a node directory would.</summary>
    public string KeyPath { get; }

    public string Fingerprint => Key.Fingerprint;

    public static ForgedKey Create(string directory) => new(directory);

    /// <summary>A certificate in the exact identity profile (CN=name, OU=role, O=Asterism node) signed by the key itself.</summary>
    public byte[] SelfSignedIdentity(string name, string role)
    {
        var request = new CertificateRequest(IdentitySubject(name, role), _ecdsa, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddYears(1));
        return certificate.RawData;
    }

    public ForgedIssuer Issuer(byte[][] pcrs, byte[]? identity) => new(Key, pcrs, identity);

    public void Dispose()
    {
        Key.Dispose();
        _ecdsa.Dispose();
    }

    private static X500DistinguishedName IdentitySubject(string name, string role)
    {
        var subject = new X500DistinguishedNameBuilder();
        subject.AddOrganizationName(IdentityCertificate.Organization);
        subject.AddOrganizationalUnitName(role);
        subject.AddCommonName(name);
        return subject.Build();
    }
}

/// <summary>A provider CA of the attacker's own: same profile and a look-alike name as the real one, not trusted by anyone.</summary>
public sealed class ForgedCa : IDisposable
{
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public ForgedCa()
    {
        Certificate = IdentityCertificate.CreateAuthority(_key, "Asterism local provider CA " + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4)),
            DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddYears(1));
    }

    public X509Certificate2 Certificate { get; }

    public string Fingerprint => IdentityCertificate.FingerprintOf(Certificate.RawData);

    public byte[] Issue(string name, string role, byte[] spki) =>
        IdentityCertificate.Issue(_key, Certificate, name, role, spki, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddYears(1));

    public void Dispose()
    {
        Certificate.Dispose();
        _key.Dispose();
    }
}

/// <summary>What the attacker knows and can do against one cluster.</summary>
public static class Attack
{
    public static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(20);

    /// <summary>
    /// The 24 PCR values a node of this cluster quotes: the expected values of asterism-conf.yaml (a world-readable
    /// file for this purpose: the attacker needs nothing secret), every other PCR zero, PCR 15 as given.
    /// </summary>
    public static byte[][] ExpectedPcrs(ClusterFixture cluster, byte[]? pcr15 = null)
    {
        var policy = Asterism.Cli.Workspace.PolicyOf(new Asterism.Cli.Workspace(cluster.Workspace).LoadConfig());
        var pcrs = new byte[SimulatedPcrBank.Count][];
        for (var i = 0; i < pcrs.Length; i++)
        {
            pcrs[i] = policy.Measurements.TryGetValue(i, out var m) ? m.Expected : new byte[SimulatedPcrBank.DigestLength];
        }
        Assert.True(policy.Measurements.Count >= 3, "the configuration enforces fewer PCRs than expected");
        if (pcr15 is not null)
        {
            pcrs[Measurements.ClusterIdIndex] = pcr15;
        }
        return pcrs;
    }

    /// <summary>
    /// A real node's credentials, as a compromised node (or anyone with the workspace) holds them: its simulated key
    /// and identity certificate from its node directory, and a PCR bank replaying its measured boot (PCR 15 zero).
    /// </summary>
    public static SimulatedIssuer NodeIssuer(ClusterFixture cluster, InstanceInfo node, out SimulatedAttestationKey key)
    {
        var bank = new SimulatedPcrBank();
        foreach (var e in MeasuredBoot.Read(cluster.Files.BootMeasurementsPath(node.Name)).Events)
        {
            bank.Extend(e.Pcr, Convert.FromHexString(e.Digest));
        }
        var nodeDir = cluster.Files.NodeDir(node.Name);
        key = SimulatedAttestationKey.Load(Path.Combine(nodeDir, SimulatedAttestationKey.FileName));
        return new SimulatedIssuer(key, bank, IdentityFiles.ReadCertificate(IdentityFiles.CertificatePath(nodeDir)));
    }

    /// <summary>
    /// One join.API call over mutual aTLS (the node side of join and rejoin). The attacker does not care who the
    /// JoinService is, so it accepts any server key; what it presents of itself is <paramref name="issuer"/>'s.
    /// </summary>
    public static async Task<TResponse> JoinCallAsync<TResponse>(InstanceInfo joinService, IAttestationIssuer issuer, Func<API.APIClient, DateTime, Task<TResponse>> call)
    {
        var anyServer = new SimulatedValidator(new SimulatedValidatorOptions { TrustAnyKey = true });
        using var handler = AtlsClient.CreateMutualHandler(issuer, anyServer, new AtlsClientOptions { HandshakeTimeout = CallTimeout, ValidationTimeout = CallTimeout });
        using var channel = GrpcChannel.ForAddress($"https://{joinService.Address}:{Ports.JoinService}", new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = false });
        return await call(new API.APIClient(channel), DateTime.UtcNow.Add(CallTimeout));
    }

    public static Task<IssueJoinTicketResponse> JoinTicketAsync(InstanceInfo joinService, IAttestationIssuer issuer, IssueJoinTicketRequest request) =>
        JoinCallAsync(joinService, issuer, (c, deadline) => c.IssueJoinTicketAsync(request, deadline: deadline).ResponseAsync);

    public static Task<IssueRejoinTicketResponse> RejoinTicketAsync(InstanceInfo joinService, IAttestationIssuer issuer, string diskUuid) =>
        JoinCallAsync(joinService, issuer, (c, deadline) => c.IssueRejoinTicketAsync(new IssueRejoinTicketRequest { DiskUuid = diskUuid }, deadline: deadline).ResponseAsync);

    /// <summary>
    /// Runs an attack call that must be refused; returns the failure (never a response: a response is the attack
    /// succeeding, and it is put into <paramref name="received"/> for the leak scan before the test fails).
    /// </summary>
    public static async Task<Exception> RefusedAsync<T>(Func<Task<T>> call, ConcurrentQueue<string> received, string what)
    {
        try
        {
            var response = await call();
            received.Enqueue($"{what}: {response}");
            Assert.Fail($"{what}: the call succeeded and returned {response?.GetType().Name} (the attack worked)");
            throw new UnreachableException();
        }
        catch (Exception e) when (e is not Xunit.Sdk.XunitException)
        {
            received.Enqueue($"{what}: {e}");
            return e;
        }
    }

    /// <summary>A refusal in the handshake (the aTLS peer aborted) or an RPC error other than a response.</summary>
    public static bool IsHandshakeRefusal(Exception e) =>
        AtlsRefusedException.FindIn(e) is not null
        || e is RpcException { StatusCode: StatusCode.Unavailable or StatusCode.Internal or StatusCode.Unauthenticated };

    /// <summary>
    /// Waits for a console line satisfying <paramref name="match"/> on any of <paramref name="nodes"/>; returns it.
    /// </summary>
    public static async Task<LogEntry> WaitForAnyLogAsync(ClusterFixture cluster, IEnumerable<InstanceInfo> nodes, Func<LogEntry, bool> match, string what, TimeSpan? timeout = null)
    {
        var list = nodes.ToList();
        var (found, reached) = await Poll.UntilAsync(
            () => Task.FromResult(list.Select(node => cluster.Log(node).AllEntries().FirstOrDefault(match)).FirstOrDefault(e => e is not null)),
            e => e is not null, timeout ?? TimeSpan.FromSeconds(30));
        if (!reached)
        {
            Assert.Fail($"{what} did not appear in the console of any of {string.Join(", ", list.Select(n => n.Name))}");
        }
        return found!;
    }

    /// <summary>Sends a POSIX signal by PID (SIGSTOP/SIGCONT to a node this test's cluster started).</summary>
    public static void Signal(int pid, string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-" + signal, pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]) { UseShellExecute = false })!;
        kill.WaitForExit();
        Assert.True(kill.ExitCode == 0, $"kill -{signal} {pid} failed");
    }

    /// <summary>Whether <paramref name="key"/> opens a keyslot of the node's state disk (read-only check).</summary>
    public static bool DiskOpensWith(ClusterFixture cluster, InstanceInfo node, ReadOnlySpan<byte> key)
    {
        using var image = Asterism.Disk.Luks2Image.Open(cluster.Files.DiskPath(node.Name), writable: false);
        return image.CheckKey(key) == Asterism.Disk.KeyCheckResult.Accepted;
    }
}

/// <summary>
/// A squatter: a Kestrel listener the attacker binds on a node's own address and a well-known port, speaking the
/// real protocol (aTLS, gRPC) so that it is indistinguishable on the wire until attestation is checked. It records
/// every TCP connection and every message it receives (for the leak scan) and answers with material of its choosing.
/// </summary>
public sealed class Squatter : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _connections;

    private Squatter(WebApplication app, SquatterLog log)
    {
        _app = app;
        Log = log;
    }

    /// <summary>What reached the squatter's services (gRPC calls; only after an accepted handshake).</summary>
    public SquatterLog Log { get; }

    /// <summary>TCP connections accepted (before any TLS).</summary>
    public int Connections => Volatile.Read(ref _connections);

    /// <summary>A fake RecoveryServer: serves recoverproto with <paramref name="issuer"/>'s attestation and reports <paramref name="diskUuid"/>.</summary>
    public static Task<Squatter> RecoveryServerAsync(IPAddress address, IAttestationIssuer issuer, string diskUuid, string nodeName) =>
        StartAsync(address, Ports.Recovery, (listen, _) => listen.UseAtlsServer(issuer), (services, log) => services.AddSingleton(new FakeRecoveryServer(log, diskUuid, nodeName)),
            app => app.MapGrpcService<FakeRecoveryServer>());

    /// <summary>
    /// A fake JoinService handing out tickets of its choosing. Nodes check the JoinService (mutual aTLS), so the
    /// squatter presents <paramref name="issuer"/>'s forged attestation: expected PCRs, PCR 15 ≠ 0 like a serving
    /// control plane, but a key no provider certified. It accepts any client.
    /// </summary>
    public static Task<Squatter> JoinServiceAsync(IPAddress address, IAttestationIssuer issuer, FakeTicket ticket)
    {
        var anyClient = new SimulatedValidator(new SimulatedValidatorOptions { TrustAnyKey = true });
        return StartAsync(address, Ports.JoinService, (listen, _) => listen.UseAtlsMutual(issuer, anyClient),
            (services, log) => services.AddSingleton(new FakeJoinService(log, ticket)), app => app.MapGrpcService<FakeJoinService>());
    }

    private static async Task<Squatter> StartAsync(IPAddress address, int port, Action<ListenOptions, SquatterLog> listen,
        Action<IServiceCollection, SquatterLog> services, Action<WebApplication> map)
    {
        var log = new SquatterLog();
        Squatter? squatter = null;
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(address, port, l =>
        {
            l.Protocols = HttpProtocols.Http2;
            l.Use(next => connection =>
            {
                Interlocked.Increment(ref squatter!._connections);
                return next(connection);
            });
            listen(l, log);
        }));
        builder.WebHost.UseShutdownTimeout(TimeSpan.FromSeconds(2));
        builder.Services.AddGrpc();
        services(builder.Services, log);
        var app = builder.Build();
        map(app);
        squatter = new Squatter(app, log);
        await app.StartAsync();
        return squatter;
    }

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await _app.StopAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
        }
        await _app.DisposeAsync();
    }
}

/// <summary>Everything a squatter's services received, as text (key bytes in hex, so the leak scan finds them).</summary>
public sealed class SquatterLog
{
    private readonly ConcurrentQueue<string> _entries = new();

    public IReadOnlyCollection<string> Entries => _entries;

    public int Calls => _entries.Count(e => e.StartsWith("call ", StringComparison.Ordinal));

    public void Add(string entry) => _entries.Enqueue(entry);

    public override string ToString() => string.Join('\n', _entries);
}

/// <summary>The keys a fake JoinService hands out: all known to the attacker.</summary>
public sealed record FakeTicket(byte[] DiskKey, byte[] MeasurementSecret, byte[] MeasurementSalt, byte[] MasterKey, byte[] MasterSalt, byte[] AttestationConfig)
{
    public static FakeTicket Create()
    {
        var policy = new AttestationPolicy { Variant = AttestationVariant.Simulated, Measurements = Measurements.Empty, TrustAnyKey = true };
        return new FakeTicket(RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32),
            RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32), policy.ToJson());
    }
}

internal sealed class FakeRecoveryServer(SquatterLog log, string diskUuid, string nodeName) : Asterism.Protocol.Recover.API.APIBase
{
    public override async Task Recover(IAsyncStreamReader<Asterism.Protocol.Recover.RecoverMessage> requestStream,
        IServerStreamWriter<Asterism.Protocol.Recover.RecoverResponse> responseStream, ServerCallContext context)
    {
        log.Add($"call Recover from {context.Peer}");
        while (await requestStream.MoveNext(context.CancellationToken))
        {
            var m = requestStream.Current;
            log.Add($"received {m.RequestCase}: {Convert.ToHexString(m.MeasurementSecret.Span)}{Convert.ToHexString(m.StateDiskKey.Span)}");
            if (m.RequestCase == Asterism.Protocol.Recover.RecoverMessage.RequestOneofCase.MeasurementSecret)
            {
                await responseStream.WriteAsync(new Asterism.Protocol.Recover.RecoverResponse { DiskUuid = diskUuid, NodeName = nodeName, Role = NodeIdentity.ControlPlaneRole });
            }
        }
    }
}

internal sealed class FakeJoinService(SquatterLog log, FakeTicket ticket) : API.APIBase
{
    public override Task<IssueJoinTicketResponse> IssueJoinTicket(IssueJoinTicketRequest request, ServerCallContext context)
    {
        log.Add($"call IssueJoinTicket from {context.Peer} node={request.NodeName} disk={request.DiskUuid} controlPlane={request.IsControlPlane}");
        return Task.FromResult(new IssueJoinTicketResponse
        {
            StateDiskKey = ByteString.CopyFrom(ticket.DiskKey),
            MeasurementSecret = ByteString.CopyFrom(ticket.MeasurementSecret),
            MeasurementSalt = ByteString.CopyFrom(ticket.MeasurementSalt),
            MasterKey = ByteString.CopyFrom(ticket.MasterKey),
            MasterSalt = ByteString.CopyFrom(ticket.MasterSalt),
            AttestationConfig = ByteString.CopyFrom(ticket.AttestationConfig),
        });
    }

    public override Task<IssueRejoinTicketResponse> IssueRejoinTicket(IssueRejoinTicketRequest request, ServerCallContext context)
    {
        log.Add($"call IssueRejoinTicket from {context.Peer} disk={request.DiskUuid}");
        return Task.FromResult(new IssueRejoinTicketResponse
        {
            StateDiskKey = ByteString.CopyFrom(ticket.DiskKey),
            MeasurementSecret = ByteString.CopyFrom(ticket.MeasurementSecret),
        });
    }
}

/// <summary>
/// An asterism-node process the attacker starts itself, exactly as the provider would (same binary and boot
/// arguments, --debug), but with a node directory of its own making. Killed by PID on dispose.
/// </summary>
public sealed class RogueNode : IDisposable
{
    private readonly Process _process;
    private bool _disposed;

    private RogueNode(Process process, string console)
    {
        _process = process;
        ConsolePath = console;
    }

    public string ConsolePath { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public NodeLog Log => NodeLog.Read(ConsolePath);

    /// <summary>Starts the node binary of <paramref name="cluster"/>'s spec with the given identity on <paramref name="address"/>.</summary>
    public static RogueNode Start(ClusterFixture cluster, string directory, string name, string role, string address)
    {
        var spec = CloudSpec.Load(cluster.Files.SpecPath);
        var console = Path.Combine(directory, "console.log");
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false, WorkingDirectory = directory };
        foreach (var arg in new[] { "-c", "exec \"$@\" </dev/null >>\"$0\" 2>&1", console }
            .Concat(spec.NodeCommand).Concat(spec.NodeArgs)
            .Concat(["--name", name, "--role", role, "--address", address, "--disk", Path.Combine(directory, "disk.img"),
                "--node-dir", Path.Combine(directory, "node"),
                "--metadata", $"http://{spec.ParsedSubnet().ProviderAddress}:{Ports.Metadata}",
                "--variant", spec.Variant, "--debug"]))
        {
            psi.ArgumentList.Add(arg);
        }
        return new RogueNode(Process.Start(psi)!, console);
    }

    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>SIGKILL by PID (this test started it); idempotent.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        if (!_process.HasExited)
        {
            Processes.Kill(_process.Id);
            _process.WaitForExit(10_000);
        }
        _process.Dispose();
    }
}

/// <summary>
/// A bounded handshake flood against aTLS listeners (the recovery ports of waiting control planes), from this process
/// on its own loopback source addresses. Per target: idle connections that never send a ClientHello and reconnect
/// when dropped; TLS ClientHellos with a fresh nonce server name and ALPN h2 that abort (RST) right after the server's
/// first flight, so each one makes the node attest for nothing; and complete handshakes in a loop that then close.
/// A target's loops end when it refuses connections (its RecoveryServer is gone); the whole flood ends after
/// <c>maxDuration</c> or <c>maxConnections</c> connections, whichever comes first, or on <see cref="StopAsync"/>.
/// </summary>
public sealed class HandshakeFlood : IAsyncDisposable
{
    /// <summary>Attackers per target, by kind.</summary>
    public sealed record Size(int Idle, int Hello, int Handshakes);

    /// <summary>What the attackers achieved against one target.</summary>
    public sealed record Counts(long IdleConnects, long IdleDropped, long Flights, long Handshakes, long Failures)
    {
        /// <summary>Documents the node issued for attackers: aborted ClientHellos that got the flight, and complete handshakes.</summary>
        public long Attestations => Flights + Handshakes;

        public static Counts operator -(Counts a, Counts b) =>
            new(a.IdleConnects - b.IdleConnects, a.IdleDropped - b.IdleDropped, a.Flights - b.Flights, a.Handshakes - b.Handshakes, a.Failures - b.Failures);

        public override string ToString() =>
            $"idle connects={IdleConnects} dropped by the node={IdleDropped}; attestations forced={Attestations} (aborted after the flight={Flights}, complete handshakes={Handshakes}); failures={Failures}";
    }

    /// <summary>Per-connection bound, so a hung handshake cannot hold an attacker forever.</summary>
    private static readonly TimeSpan ConnectionTimeout = TimeSpan.FromSeconds(20);

    private readonly Target[] _targets;
    private readonly Size _size;
    private readonly long _maxConnections;
    private readonly CancellationTokenSource _stop;
    private readonly Stopwatch _watch = Stopwatch.StartNew();
    private Task _loops = Task.CompletedTask;
    private long _connections;

    private HandshakeFlood(IReadOnlyList<IPEndPoint> targets, Size size, TimeSpan maxDuration, long maxConnections)
    {
        // Own source addresses per target (127.201.<target>.<1..8>), so the flood spreads over several ephemeral port
        // ranges and never competes for ports with the cluster's own connections from 127.0.0.1.
        _targets = [.. targets.Select((endpoint, i) => new Target(endpoint,
            [.. Enumerable.Range(1, 8).Select(s => new IPAddress(new byte[] { 127, 201, (byte)i, (byte)s }))]))];
        _size = size;
        _maxConnections = maxConnections;
        _stop = new CancellationTokenSource(maxDuration);
    }

    /// <summary>Completes once every attacker of every target has connected and each target has issued documents.</summary>
    public TaskCompletionSource Underway { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>TCP connections opened so far (all targets, all kinds).</summary>
    public long Connections => Interlocked.Read(ref _connections);

    public TimeSpan Elapsed => _watch.Elapsed;

    public IReadOnlyList<IPEndPoint> Targets => [.. _targets.Select(t => t.Endpoint)];

    /// <summary>The counts of each target, in the order given.</summary>
    public IReadOnlyList<Counts> Snapshot() => [.. _targets.Select(t => t.Snapshot())];

    public static HandshakeFlood Start(IReadOnlyList<IPEndPoint> targets, Size size, TimeSpan maxDuration, long maxConnections)
    {
        Assert.All(targets, t => Assert.True(IPAddress.IsLoopback(t.Address), $"{t} is not a loopback address"));
        var flood = new HandshakeFlood(targets, size, maxDuration, maxConnections);
        var loops = new List<Task>();
        foreach (var target in flood._targets)
        {
            loops.AddRange(Enumerable.Range(0, size.Idle).Select(i => Task.Run(() => flood.IdleLoopAsync(target, i))));
            loops.AddRange(Enumerable.Range(0, size.Hello).Select(i => Task.Run(() => flood.TlsLoopAsync(target, i, complete: false))));
            loops.AddRange(Enumerable.Range(0, size.Handshakes).Select(i => Task.Run(() => flood.TlsLoopAsync(target, i, complete: true))));
        }
        flood._loops = Task.WhenAll(loops);
        return flood;
    }

    /// <summary>Stops every attacker and waits until each has closed its socket.</summary>
    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await _loops;
        _watch.Stop();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _stop.Dispose();
    }

    private sealed class Target(IPEndPoint endpoint, IPAddress[] sources)
    {
        public long IdleConnects;
        public long IdleDropped;
        public long Flights;
        public long Handshakes;
        public long Failures;

        public IPEndPoint Endpoint { get; } = endpoint;

        public IPAddress[] Sources { get; } = sources;

        /// <summary>Set once the target refused a connection: nothing listens there any more.</summary>
        public volatile bool Gone;

        public Counts Snapshot() => new(Interlocked.Read(ref IdleConnects), Interlocked.Read(ref IdleDropped), Interlocked.Read(ref Flights),
            Interlocked.Read(ref Handshakes), Interlocked.Read(ref Failures));
    }

    /// <summary>Whether an attacker may open one more connection to <paramref name="target"/>.</summary>
    private bool NextConnection(Target target) =>
        !_stop.IsCancellationRequested && !target.Gone && Interlocked.Increment(ref _connections) <= _maxConnections;

    /// <summary>Connects from one of the target's source addresses; false when the target refuses (its listener is gone).</summary>
    private async Task<Socket?> ConnectAsync(Target target, int attacker)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(new IPEndPoint(target.Sources[attacker % target.Sources.Length], 0));
            await socket.ConnectAsync(target.Endpoint, _stop.Token);
            return socket;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
        {
            target.Gone = true;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            if (e is SocketException)
            {
                Interlocked.Increment(ref target.Failures);
            }
        }
        socket.Dispose();
        return null;
    }

    /// <summary>Connects and sends nothing; reconnects as soon as the node closes the connection.</summary>
    private async Task IdleLoopAsync(Target target, int attacker)
    {
        var buffer = new byte[256];
        while (NextConnection(target))
        {
            using var socket = await ConnectAsync(target, attacker);
            if (socket is null)
            {
                continue;
            }
            Interlocked.Increment(ref target.IdleConnects);
            CheckUnderway();
            try
            {
                while (await socket.ReceiveAsync(buffer, SocketFlags.None, _stop.Token) > 0)
                {
                }
                Interlocked.Increment(ref target.IdleDropped);
            }
            catch (SocketException)
            {
                Interlocked.Increment(ref target.IdleDropped);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    /// <summary>
    /// A TLS 1.3 ClientHello with a fresh aTLS nonce server name and ALPN h2. The server's flight counts only when its
    /// certificate carries an attestation document (the node did attest). Then: abort with a reset, or finish the
    /// handshake and close.
    /// </summary>
    private async Task TlsLoopAsync(Target target, int attacker, bool complete)
    {
        while (NextConnection(target))
        {
            using var socket = await ConnectAsync(target, attacker);
            if (socket is null)
            {
                continue;
            }
            var attested = false;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            timeout.CancelAfter(ConnectionTimeout);
            try
            {
                await using var tls = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false);
                await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
                {
                    TargetHost = AtlsNonce.ToServerName(AtlsNonce.Create()),
                    ApplicationProtocols = [SslApplicationProtocol.Http2],
                    EnabledSslProtocols = System.Security.Authentication.SslProtocols.Tls13,
                    CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                    RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                    {
                        attested = CarriesAttestation(certificate);
                        return complete && attested;
                    },
                }, timeout.Token);
                if (attested)
                {
                    Interlocked.Increment(ref target.Handshakes);
                }
                else
                {
                    Interlocked.Increment(ref target.Failures);
                }
            }
            catch (Exception e) when (e is System.Security.Authentication.AuthenticationException or IOException or SocketException or OperationCanceledException)
            {
                if (attested && !complete)
                {
                    Interlocked.Increment(ref target.Flights);
                }
                else if (!_stop.IsCancellationRequested)
                {
                    Interlocked.Increment(ref target.Failures);
                }
            }
            finally
            {
                // Vanish without a goodbye: a reset, and no TIME_WAIT left on this side.
                socket.LingerState = new LingerOption(true, 0);
            }
            CheckUnderway();
        }
    }

    private static bool CarriesAttestation(X509Certificate? certificate) =>
        certificate is X509Certificate2 c && c.Extensions.Any(e => e.Oid?.Value?.StartsWith(AttestationVariant.OidArc + ".", StringComparison.Ordinal) == true);

    private void CheckUnderway()
    {
        if (!Underway.Task.IsCompleted && _targets.All(t => Interlocked.Read(ref t.IdleConnects) >= _size.Idle
            && Interlocked.Read(ref t.Flights) >= _size.Hello && Interlocked.Read(ref t.Handshakes) >= _size.Handshakes))
        {
            Underway.TrySetResult();
        }
    }
}
