using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using Asterism.Atls;
using Asterism.Attestation;
using Asterism.Attestation.Simulated;
using Asterism.Attestation.Tpm;
using Asterism.Benchmarks.Atls;
using Asterism.Tpm;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Asterism.Benchmarks.Tpm;

/// <summary>
/// `macro tpm-atls`: fresh aTLS connections (new handler + TLS 1.3 handshake with attestation + one HTTP/2 request)
/// to a server attesting with the tpm variant (TPM2_Quote of PCRs 0-15 on swtpm) against one attesting with the
/// simulated variant, alternating blocks in the same run; plus issue and validate cost of each variant's document.
/// Arguments: [connections per variant = 300].
/// </summary>
public sealed class TpmAtlsBenchmark : IMacroBenchmark
{
    public string Name => "tpm-atls";

    public string Description => "aTLS fresh handshake, tpm variant (swtpm) vs simulated variant";

    public async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        var iterations = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 300;
        var dir = Directory.CreateTempSubdirectory("asterism-bench-tpm-atls-").FullName;
        try
        {
            await using var swtpm = await SwtpmProcess.StartAsync(dir, cancellationToken);
            await using var tpm = await TpmAttestationSession.ConnectSwtpmAsync(swtpm.SocketPath, default, null, cancellationToken);
            await tpm.Pcrs.MeasureEventAsync(4, "asterism-node"u8.ToArray(), cancellationToken);
            var tpmPolicy = new AttestationPolicy
            {
                Variant = AttestationVariant.Tpm,
                Measurements = new Measurements().With(4, new Measurement(await tpm.Pcrs.ReadAsync(4, cancellationToken))).WithZeroPcr15(),
                TrustedKeys = [tpm.KeyFingerprint],
            };
            var tpmValidator = tpmPolicy.CreateValidator();

            using var key = SimulatedAttestationKey.Create();
            var pcrs = new SimulatedPcrBank();
            pcrs.MeasureEvent(4, "asterism-node"u8);
            var simIssuer = new SimulatedIssuer(key, pcrs);
            var simValidator = new AttestationPolicy
            {
                Variant = AttestationVariant.Simulated,
                Measurements = new Measurements().With(4, new Measurement(pcrs.Read(4))).WithZeroPcr15(),
                TrustedKeys = [key.Fingerprint],
            }.CreateValidator();

            await using var tpmServer = await LoopbackServer.StartAsync(l => l.UseAtlsServer(tpm.Issuer), cancellationToken);
            await using var simServer = await LoopbackServer.StartAsync(l => l.UseAtlsServer(simIssuer), cancellationToken);
            Func<Task> tpmConnect = () => LoopbackServer.FreshRequestAsync(AtlsClient.CreateHandler(tpmValidator), tpmServer.Url, cancellationToken);
            Func<Task> simConnect = () => LoopbackServer.FreshRequestAsync(AtlsClient.CreateHandler(simValidator), simServer.Url, cancellationToken);
            for (var i = 0; i < 50; i++)
            {
                await tpmConnect();
                await simConnect();
            }
            var tpmTimes = new List<double>();
            var simTimes = new List<double>();
            const int block = 20;
            for (var done = 0; done < iterations; done += block)
            {
                await BlockAsync(tpmConnect, block, tpmTimes);
                await BlockAsync(simConnect, block, simTimes);
            }

            var userData = SHA256.HashData("tls key"u8);
            var tpmIssue = new List<double>();
            var simIssue = new List<double>();
            var tpmValidate = new List<double>();
            var simValidate = new List<double>();
            for (var i = 0; i < 200; i++)
            {
                var nonce = RandomNumberGenerator.GetBytes(32);
                var start = Stopwatch.GetTimestamp();
                var tpmDoc = await tpm.Issuer.IssueAsync(userData, nonce, cancellationToken);
                tpmIssue.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                start = Stopwatch.GetTimestamp();
                var simDoc = await simIssuer.IssueAsync(userData, nonce, cancellationToken);
                simIssue.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                start = Stopwatch.GetTimestamp();
                Check(await tpmValidator.ValidateAsync(tpmDoc, nonce, cancellationToken));
                tpmValidate.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                start = Stopwatch.GetTimestamp();
                Check(await simValidator.ValidateAsync(simDoc, nonce, cancellationToken));
                simValidate.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            }

            var tpmMs = Median(tpmTimes);
            var simMs = Median(simTimes);
            Console.WriteLine($"tpm-atls.connections {tpmTimes.Count} per variant");
            Console.WriteLine($"tpm-atls.handshake.tpm.median_ms {tpmMs:0.000}");
            Console.WriteLine($"tpm-atls.handshake.simulated.median_ms {simMs:0.000}");
            Console.WriteLine($"tpm-atls.handshake.ratio_tpm_vs_simulated {tpmMs / simMs:0.00} (median wall time per fresh connection)");
            Console.WriteLine($"tpm-atls.issue.tpm.median_ms {Median(tpmIssue):0.000} (TPM2_Quote + PCR_Read of 16 PCRs)");
            Console.WriteLine($"tpm-atls.issue.simulated.median_ms {Median(simIssue):0.000}");
            Console.WriteLine($"tpm-atls.validate.tpm.median_ms {Median(tpmValidate):0.000}");
            Console.WriteLine($"tpm-atls.validate.simulated.median_ms {Median(simValidate):0.000}");
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static void Check(AttestationVerdict verdict)
    {
        if (!verdict.Accepted)
        {
            throw new InvalidOperationException("benchmark document refused: " + verdict);
        }
    }

    private static async Task BlockAsync(Func<Task> action, int count, List<double> times)
    {
        for (var i = 0; i < count; i++)
        {
            var start = Stopwatch.GetTimestamp();
            await action();
            times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        }
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }
}
