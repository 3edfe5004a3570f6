using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Asterism.Tpm;

namespace Asterism.Benchmarks.Tpm;

/// <summary>
/// TPM2_Quote latency through Asterism.Tpm (one connection, key loaded) against <c>tpm2_quote</c> as a process
/// (what a tool-based issuer would pay), on the same swtpm in the same run.
/// Arguments: [ourQuotes=200] [toolQuotes=20].
/// </summary>
public sealed class TpmQuoteBenchmark : IMacroBenchmark
{
    private const string AkAttributes = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign|noda";
    private static readonly int[] Pcrs = [0, 7, 15, 16];

    public string Name => "tpm-quote";

    public string Description => "TPM2_Quote via Asterism.Tpm vs tpm2_quote processes (swtpm)";

    public async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        var ours = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 200;
        var tools = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 20;
        var dir = Directory.CreateTempSubdirectory("asterism-bench-tpm-").FullName;
        try
        {
            await using var swtpm = await SwtpmProcess.StartAsync(Path.Combine(dir, "state"), cancellationToken);
            var nonce = RandomNumberGenerator.GetBytes(32);

            var ourTimes = new List<double>();
            await using (var client = await swtpm.ConnectAsync(null, cancellationToken))
            await using (var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, default, cancellationToken))
            {
                var selection = TpmPcrSelection.Sha256(Pcrs);
                for (var i = 0; i < 10; i++)
                {
                    await client.QuoteAsync(ak.Handle, default, nonce, selection, cancellationToken);
                }
                for (var i = 0; i < ours; i++)
                {
                    var sw = Stopwatch.StartNew();
                    await client.QuoteAsync(ak.Handle, default, nonce, selection, cancellationToken);
                    ourTimes.Add(sw.Elapsed.TotalMilliseconds);
                }
            }

            var tcti = swtpm.Tcti;
            var ctx = Path.Combine(dir, "ak.ctx");
            await RunToolAsync(tcti, "tpm2_createprimary", "-Q", "-C", "e", "-G", "ecc256:ecdsa-sha256:null", "-g", "sha256", "-a", AkAttributes, "-c", ctx);
            // Quote by the loaded handle: loading the saved context per run would leak one of the 3 transient slots per run.
            var handle = (await RunToolAsync(tcti, "tpm2_getcap", "handles-transient")).Trim().TrimStart('-', ' ').Split('\n')[0].Trim();
            var toolTimes = new List<double>();
            var quoteArgs = new[] { "-Q", "-c", handle, "-l", "sha256:" + string.Join(',', Pcrs), "-q", Convert.ToHexString(nonce),
                "-m", Path.Combine(dir, "msg"), "-s", Path.Combine(dir, "sig"), "-g", "sha256" };
            await RunToolAsync(tcti, "tpm2_quote", quoteArgs);
            for (var i = 0; i < tools; i++)
            {
                var sw = Stopwatch.StartNew();
                await RunToolAsync(tcti, "tpm2_quote", quoteArgs);
                toolTimes.Add(sw.Elapsed.TotalMilliseconds);
            }
            await RunToolAsync(tcti, "tpm2_flushcontext", "-t");

            Report("asterism-tpm quote", ourTimes);
            Report("tpm2_quote process", toolTimes);
            Console.WriteLine(FormattableString.Invariant(
                $"tpm-quote ratio (tpm2_quote / asterism) mean {toolTimes.Average() / ourTimes.Average():F1}x, p50 {Percentile(toolTimes, 50) / Percentile(ourTimes, 50):F1}x"));
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static void Report(string what, List<double> ms) =>
        Console.WriteLine(FormattableString.Invariant(
            $"{what,-20} n={ms.Count,4} mean {ms.Average():F3} ms  p50 {Percentile(ms, 50):F3} ms  p95 {Percentile(ms, 95):F3} ms"));

    private static double Percentile(List<double> values, int p)
    {
        var sorted = values.Order().ToList();
        var rank = (int)Math.Ceiling(p / 100.0 * sorted.Count) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Count - 1)];
    }

    private static async Task<string> RunToolAsync(string tcti, string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["TPM2TOOLS_TCTI"] = tcti;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"{tool} did not start (install tpm2-tools)");
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"{tool} exited {p.ExitCode}: {await stderr}");
        }
        return stdout;
    }
}
