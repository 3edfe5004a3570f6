using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Runtime.InteropServices;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Asterism.Atls;
using Asterism.Atls.OpenSsl;
using Asterism.Attestation;
using Asterism.Attestation.Identities;
using Asterism.Attestation.Simulated;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Benchmarks.Atls;

/// <summary>
/// `macro atls`: (1) fresh-connection cost of aTLS (simulated variant) vs plain TLS 1.3 with a static certificate,
/// each iteration a new handler + connection + one HTTP/2 request, interleaved in the same run; (2) single-core
/// validation throughput vs `openssl speed ecdsap256` verifications/s measured in the same run.
/// </summary>
public sealed partial class AtlsMacroBenchmark : IMacroBenchmark
{
    public string Name => "atls";

    public string Description => "aTLS handshake vs plain TLS 1.3; validation docs/s vs openssl ECDSA P-256 verify/s";

    public async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        var iterations = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 400;
        using var key = SimulatedAttestationKey.Create();
        var pcrs = new SimulatedPcrBank();
        pcrs.MeasureEvent(4, "asterism-node"u8);
        // As in a cluster: the key is certified by a provider CA, the document carries the identity certificate, and the
        // validator trusts the key only through the chain to that CA (no pinned key).
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var now = DateTimeOffset.UtcNow;
        using var ca = IdentityCertificate.CreateAuthority(caKey, "bench provider CA", now.AddHours(-1), now.AddDays(1));
        var identity = IdentityCertificate.Issue(caKey, ca, "bench-control-plane-0", NodeIdentity.ControlPlaneRole, key.PublicKeySpki, now.AddHours(-1), now.AddDays(1));
        var issuer = new SimulatedIssuer(key, pcrs, identity);
        using var authority = new IdentityAuthority(ca.RawData);
        var options = new SimulatedValidatorOptions
        {
            Measurements = new Measurements().With(4, new Measurement(pcrs.Read(4))).WithZeroPcr15(),
            IdentityAuthority = authority,
        };
        var validator = new SimulatedValidator(options);

        await HandshakesAsync(issuer, validator, iterations, cancellationToken);

        var nonce = AtlsNonce.Create();
        var certificate = await AtlsCertificate.CreateAsync(issuer, nonce, DateTimeOffset.UtcNow, cancellationToken);
        var document = issuer.Issue(AtlsCertificate.UserDataFor(certificate), nonce);
        var verifier = new AtlsCertificateVerifier(new AttestationValidatorSet(validator), TimeSpan.FromSeconds(10));
        var validatePerSecond = Throughput(() =>
        {
            if (!validator.Validate(document, nonce).Accepted)
            {
                throw new InvalidOperationException("benchmark document refused");
            }
        });
        var verifyCertPerSecond = Throughput(() =>
        {
            if (!verifier.VerifyAsync(certificate, nonce, CancellationToken.None).AsTask().GetAwaiter().GetResult().Verdict.Accepted)
            {
                throw new InvalidOperationException("benchmark certificate refused");
            }
        });
        // Per-connection server work: what UseAtlsServer does (key, document, DER certificate, OpenSSL objects), and
        // what SslStream would need for the same certificate (X509Certificate2 with key + certificate context).
        var credentialsPerSecond = Throughput(() =>
        {
            using var fresh = new ECDsaOpenSsl(ECCurve.NamedCurves.nistP256);
            var der = AtlsCertificate.CreateDerAsync(fresh, issuer, nonce, DateTimeOffset.UtcNow, CancellationToken.None).AsTask().GetAwaiter().GetResult();
            TlsCredential.Create(der, fresh).Dispose();
        });
        var sslStreamCertificatesPerSecond = Throughput(() =>
        {
            using var fresh = AtlsCertificate.CreateAsync(issuer, nonce, DateTimeOffset.UtcNow, CancellationToken.None).AsTask().GetAwaiter().GetResult();
            SslStreamCertificateContext.Create(fresh, null, offline: true);
        });
        Console.WriteLine($"atls.server.credential_ms {1000 / credentialsPerSecond:0.000} (fresh key + document + certificate as OpenSSL objects)");
        Console.WriteLine($"sslstream.server.certificate_ms {1000 / sslStreamCertificatesPerSecond:0.000} (the same as X509Certificate2 + SslStreamCertificateContext, for comparison)");
        var openssl = await OpensslVerifyPerSecondAsync(cancellationToken);
        Console.WriteLine($"atls.validate.documents_per_s {validatePerSecond:0}");
        Console.WriteLine($"atls.validate.certificates_per_s {verifyCertPerSecond:0}");
        if (openssl is { } verifies)
        {
            Console.WriteLine($"openssl.ecdsap256.verify_per_s {verifies:0}");
            Console.WriteLine($"atls.validate.documents_ratio_vs_openssl_verify {validatePerSecond / verifies:0.00}");
            Console.WriteLine($"atls.validate.certificates_ratio_vs_openssl_verify {verifyCertPerSecond / verifies:0.00}");
        }
        else
        {
            Console.WriteLine("openssl.ecdsap256.verify_per_s unavailable (openssl not found or output not understood)");
        }
        return 0;
    }

    private static async Task HandshakesAsync(SimulatedIssuer issuer, SimulatedValidator validator, int iterations, CancellationToken cancellationToken)
    {
        using var staticKey = new ECDsaOpenSsl(ECCurve.NamedCurves.nistP256);
        using var staticCertificate = AtlsCertificate.Build(staticKey, null, null, DateTimeOffset.UtcNow);
        var pinned = staticCertificate.RawData;
        await using var atlsServer = await LoopbackServer.StartAsync(l => l.UseAtlsServer(issuer), cancellationToken);
        // Join and rejoin: the client attests alone (before issue #12), and both ends attest in one handshake.
        await using var clientAttestsServer = await LoopbackServer.StartAsync(l => l.UseAtlsClientValidation(validator), cancellationToken);
        await using var mutualServer = await LoopbackServer.StartAsync(l => l.UseAtlsMutual(issuer, validator), cancellationToken);
        // The baseline of the target: Kestrel's own TLS (SslStream) with a static certificate.
        await using var tlsServer = await LoopbackServer.StartAsync(l => l.UseHttps(h =>
        {
            h.ServerCertificate = staticCertificate;
            h.SslProtocols = SslProtocols.Tls13;
        }), cancellationToken);
        // aTLS's transport (OpenSSL, one shared context) with the same static certificate and no attestation:
        // separates attestation's own cost from the TLS stack's.
        await using var opensslServer = await LoopbackServer.StartAsync(l => l.UseOpenSslTls(
            (_, _, _, _) => ValueTask.FromResult<TlsCredential?>(TlsCredential.Create(pinned, staticKey)),
            new AtlsServerOptions(), NullLogger.Instance), cancellationToken);

        var modes = new (string Name, Func<Task> Run)[]
        {
            ("atls", () => LoopbackServer.FreshRequestAsync(AtlsClient.CreateHandler(validator), atlsServer.Url, cancellationToken)),
            ("tls13", () => LoopbackServer.FreshRequestAsync(PinnedHandler(pinned), tlsServer.Url, cancellationToken)),
            ("tls13_openssl", () => LoopbackServer.FreshRequestAsync(PinnedHandler(pinned), opensslServer.Url, cancellationToken)),
            ("atls_client_attests", () => LoopbackServer.FreshRequestAsync(AtlsClient.CreateAttestingHandler(issuer), clientAttestsServer.Url, cancellationToken)),
            ("atls_mutual", () => LoopbackServer.FreshRequestAsync(AtlsClient.CreateMutualHandler(issuer, validator), mutualServer.Url, cancellationToken)),
        };
        for (var i = 0; i < 100; i++)
        {
            foreach (var mode in modes)
            {
                await mode.Run();
            }
        }
        // Alternate blocks so every mode sees the same machine load; per block, record each request's wall time and
        // the whole process's CPU time (client and server both run here).
        var times = modes.Select(_ => new List<double>()).ToArray();
        var cpu = new TimeSpan[modes.Length];
        const int block = 20;
        for (var done = 0; done < iterations; done += block)
        {
            for (var m = 0; m < modes.Length; m++)
            {
                cpu[m] += await BlockAsync(modes[m].Run, block, times[m]);
            }
        }
        var medians = times.Select(Median).ToArray();
        var cpuMs = cpu.Select((c, m) => c.TotalMilliseconds / times[m].Count).ToArray();
        Console.WriteLine($"atls.handshake.connections {times[0].Count} per mode");
        for (var m = 0; m < modes.Length; m++)
        {
            Console.WriteLine($"{modes[m].Name}.handshake.median_ms {medians[m]:0.000}");
        }
        Console.WriteLine($"atls.handshake.ratio_vs_tls13 {medians[0] / medians[1]:0.00} (median wall time, target <= 1.3)");
        Console.WriteLine($"atls.handshake.ratio_vs_tls13_openssl {medians[0] / medians[2]:0.00} (attestation alone, same TLS stack)");
        Console.WriteLine($"atls_mutual.handshake.ratio_vs_client_attests {medians[4] / medians[3]:0.00} (both ends attest vs the client alone)");
        Console.WriteLine($"atls_mutual.handshake.ratio_vs_tls13 {medians[4] / medians[1]:0.00}");
        for (var m = 0; m < modes.Length; m++)
        {
            Console.WriteLine($"{modes[m].Name}.handshake.cpu_ms {cpuMs[m]:0.000}");
        }
        Console.WriteLine($"atls.handshake.cpu_ratio_vs_tls13 {cpuMs[0] / cpuMs[1]:0.00} (client + server CPU per connection)");
    }

    /// <summary>
    /// A plain TLS 1.3 client pinned to the static certificate. Defaults otherwise (SSL_CTX reuse included); a new
    /// server name per connection means no session is ever resumed, so every connection is a full handshake, as with aTLS.
    /// </summary>
    private static SocketsHttpHandler PinnedHandler(byte[] pinned) => new()
    {
        SslOptions = new SslClientAuthenticationOptions
        {
            TargetHost = $"tls-{Guid.NewGuid():N}.test",
            EnabledSslProtocols = SslProtocols.Tls13,
            RemoteCertificateValidationCallback = (_, c, _, _) => c is not null && c.GetRawCertData().AsSpan().SequenceEqual(pinned),
        },
    };

    private static async Task<TimeSpan> BlockAsync(Func<Task> action, int count, List<double> times)
    {
        using var self = Process.GetCurrentProcess();
        var cpu = self.TotalProcessorTime;
        for (var i = 0; i < count; i++)
        {
            var start = Stopwatch.GetTimestamp();
            await action();
            times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        }
        self.Refresh();
        return self.TotalProcessorTime - cpu;
    }

    private static double Median(List<double> values)
    {
        values.Sort();
        return values[values.Count / 2];
    }

    /// <summary>
    /// Operations per second of this thread's CPU time, like `openssl speed` (which reports user CPU time unless
    /// -elapsed is given), so a machine shared with other work still compares fairly.
    /// </summary>
    private static double Throughput(Action action)
    {
        // Long enough for tiered JIT to reach optimized code (openssl is native from the first call).
        var warm = Stopwatch.StartNew();
        while (warm.Elapsed < TimeSpan.FromSeconds(1))
        {
            action();
        }
        var count = 0;
        var wall = Stopwatch.StartNew();
        var cpu = ThreadCpuSeconds();
        double used;
        do
        {
            for (var i = 0; i < 100; i++)
            {
                action();
            }
            count += 100;
            used = ThreadCpuSeconds() - cpu;
        }
        while (used < 2 && wall.Elapsed < TimeSpan.FromSeconds(20));
        return count / used;
    }

    private static double ThreadCpuSeconds()
    {
        Span<long> timespec = stackalloc long[2];
        if (ClockGetTime(ThreadCpuClock, ref timespec[0]) != 0)
        {
            throw new InvalidOperationException("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        }
        return timespec[0] + (timespec[1] / 1e9);
    }

    private const int ThreadCpuClock = 3; // CLOCK_THREAD_CPUTIME_ID on Linux

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clockId, ref long timespec);

    private static async Task<double?> OpensslVerifyPerSecondAsync(CancellationToken cancellationToken)
    {
        var psi = new ProcessStartInfo("openssl", "speed -seconds 2 ecdsap256") { RedirectStandardOutput = true, RedirectStandardError = true };
        Process? process;
        try
        {
            process = Process.Start(psi);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
        if (process is null)
        {
            return null;
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
            var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
            await process.WaitForExitAsync(cancellationToken);
            var match = OpensslLine().Match(await stdout + await stderr);
            return match.Success ? double.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture) : null;
        }
    }

    // " 256 bits ecdsa (nistp256)   0.0000s   0.0001s  41234.5  13123.4": sign/s then verify/s.
    [GeneratedRegex(@"ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)")]
    private static partial Regex OpensslLine();

}
