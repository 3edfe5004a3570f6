using System.CommandLine;
using System.Diagnostics;
using System.Text;
using Asterism.Cloud;
using Asterism.Protocol;

namespace Asterism.Cli.Commands;

/// <summary>
/// <c>asterism demo</c>: the whole story in a fresh temporary workspace — create and initialize a cluster, write data
/// on every node and a key into etcd, crash every node, show the nodes waiting for a key, recover, show the data intact, terminate.
/// Exits non-zero when any step fails.
/// </summary>
public static class DemoCommand
{
    public static Command Create(GlobalOptions global)
    {
        var controlPlanes = new Option<int>("--control-planes") { Description = "Control-plane nodes", DefaultValueFactory = _ => 3 };
        var workers = new Option<int>("--workers") { Description = "Worker nodes", DefaultValueFactory = _ => 2 };
        var variant = new Option<string>("--variant") { Description = "Attestation variant: simulated or tpm", DefaultValueFactory = _ => "simulated" };
        variant.AcceptOnlyFromAmong("simulated", "tpm");
        var keep = new Option<bool>("--keep") { Description = "Keep the workspace and leave the cluster running at the end" };
        var command = new Command("demo", "Run the whole recovery story on a local cluster, narrating each step") { controlPlanes, workers, variant, keep };
        command.SetAction(async (result, cancellationToken) =>
        {
            var demo = new Demo(result.InvocationConfiguration.Output, result.InvocationConfiguration.Error, result.GetValue(global.Debug));
            return await demo.RunAsync(result.GetValue(controlPlanes), result.GetValue(workers), result.GetValue(variant)!, result.GetValue(keep), cancellationToken);
        });
        return command;
    }

    private sealed class Demo(TextWriter stdout, TextWriter stderr, bool debug)
    {
        private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private string _workspace = "";

        public async Task<int> RunAsync(int controlPlanes, int workers, string variant, bool keep, CancellationToken cancellationToken)
        {
            _workspace = Directory.CreateTempSubdirectory("asterism-demo-").FullName;
            var created = false;
            try
            {
                Step(1, $"Create a local cluster ({controlPlanes} control-plane + {workers} worker nodes, {variant} attestation) and initialize it");
                await CliAsync(cancellationToken, "create", "--control-planes", controlPlanes.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    "--workers", workers.ToString(System.Globalization.CultureInfo.InvariantCulture), "--variant", variant);
                created = true;
                await CliAsync(cancellationToken, "init");
                using var cloud = LocalCloudClient.Connect(_workspace);
                var nodes = await cloud.ListAsync(cancellationToken);
                var payloads = new Dictionary<string, string>();
                foreach (var node in nodes)
                {
                    var value = $"written to {node.Name} before the outage ({DateTimeOffset.UtcNow:O})";
                    using var put = await WorkloadAsync(HttpMethod.Put, node, "data/demo", cloud, cancellationToken, value);
                    Check(put.IsSuccessStatusCode, $"could not write data on {node.Name}: HTTP {(int)put.StatusCode}");
                    payloads[node.Name] = value;
                }
                Say($"Wrote the file workload/demo on each of the {nodes.Count} nodes' state filesystem (ext4 inside the LUKS2 disk, mounted at node/state).");
                // Cluster data: into etcd through one control plane (which writes with its own etcd client certificate),
                // read back after the outage through another, so it is the replicated etcd that kept it.
                var controlPlaneNodes = nodes.Where(n => n.IsControlPlane).ToList();
                var writer = controlPlaneNodes[0];
                var reader = controlPlaneNodes[^1];
                var clusterValue = $"cluster data written through {writer.Name} before the outage ({DateTimeOffset.UtcNow:O})";
                using (var put = await WorkloadAsync(HttpMethod.Put, writer, "cluster-data/demo", cloud, cancellationToken, clusterValue))
                {
                    Check(put.IsSuccessStatusCode, $"could not write cluster data through {writer.Name}: HTTP {(int)put.StatusCode}");
                }
                Say($"Wrote the key /workload/demo into etcd through {writer.Name} (its etcd member replicates it to the {controlPlaneNodes.Count} control planes, all on encrypted disks).");

                Step(2, "Power outage: crash every node at once (no clean shutdown)");
                await CliAsync(cancellationToken, "power", "crash", "--all");

                Step(3, "Power returns: start every node; with no control plane left, nobody can hand out disk keys");
                await CliAsync(cancellationToken, "power", "start", "--all");
                var all = nodes.Select(n => (n.Name, n.Address)).ToList();
                Check(await NodeProbe.WaitForPhaseAsync(all, BootPhases.WaitingForKey, TimeSpan.FromSeconds(60), Progress.For(stderr), cancellationToken),
                    "not every node reported waiting for a decryption key");
                var firstCp = nodes.First(n => n.IsControlPlane);
                var excerpt = await WaitForConsoleAsync(cloud.Workspace.ConsoleLogPath(firstCp.Name), "Failed to rejoin on all endpoints", TimeSpan.FromSeconds(30), cancellationToken);
                await CliAsync(cancellationToken, "status");
                Say($"Serial console of {firstCp.Name} (excerpt):");
                foreach (var line in excerpt)
                {
                    await stdout.WriteLineAsync("    " + line);
                }

                Step(4, "Recover: attest every waiting control-plane node and push it its own disk key (in parallel)");
                var recoverWatch = Stopwatch.StartNew();
                await CliAsync(cancellationToken, "recover");
                Say($"recover took {recoverWatch.ElapsedMilliseconds} ms; workers now rejoin through the recovered control plane on their own.");
                Check(await NodeProbe.WaitForPhaseAsync(all, BootPhases.Booted, TimeSpan.FromSeconds(60), Progress.For(stderr), cancellationToken),
                    "not every node booted after recovery");
                await CliAsync(cancellationToken, "status");
                foreach (var node in nodes)
                {
                    using var get = await WorkloadAsync(HttpMethod.Get, node, "data/demo", cloud, cancellationToken);
                    Check(get.IsSuccessStatusCode, $"could not read data on {node.Name}: HTTP {(int)get.StatusCode}");
                    var value = await get.Content.ReadAsStringAsync(cancellationToken);
                    Check(value == payloads[node.Name], $"data on {node.Name} changed across the outage");
                }
                Say($"Every node's data is intact ({nodes.Count}/{nodes.Count} files read back unchanged).");
                using (var get = await WorkloadAsync(HttpMethod.Get, reader, "cluster-data/demo", cloud, cancellationToken))
                {
                    Check(get.IsSuccessStatusCode, $"could not read cluster data through {reader.Name}: HTTP {(int)get.StatusCode}");
                    Check(await get.Content.ReadAsStringAsync(cancellationToken) == clusterValue, "the cluster data in etcd changed across the outage");
                }
                Say($"Cluster data in etcd is intact: /workload/demo read back through {reader.Name}, as written through {writer.Name}.");
                // The same bytes, as a file on the remounted state filesystem (the operator runs as the node's user).
                var demoFile = Path.Combine(cloud.Workspace.NodeStateDir(firstCp.Name), "workload", "demo");
                Check(File.Exists(demoFile) && await File.ReadAllTextAsync(demoFile, cancellationToken) == payloads[firstCp.Name], $"{demoFile} does not hold what was written before the outage");
                Say($"{demoFile}:");
                Say("  " + payloads[firstCp.Name]);

                if (keep)
                {
                    Say($"Cluster left running in {_workspace} (asterism -C {_workspace} terminate --purge to remove it).");
                    return 0;
                }
                Step(5, "Terminate the cluster");
                await CliAsync(cancellationToken, "terminate", "--purge");
                created = false;
                Say($"Demo finished in {_clock.Elapsed.TotalSeconds:0.0} s.");
                return 0;
            }
            catch (CliError ex)
            {
                await stderr.WriteLineAsync($"Demo failed after {_clock.Elapsed.TotalSeconds:0.0} s: {ex.Message}");
                await stderr.WriteLineAsync($"The workspace is kept for inspection: {_workspace}");
                return 1;
            }
            finally
            {
                if (created && !keep)
                {
                    // Never leave node processes behind, even when a step failed.
                    var cloud = LocalCloudClient.TryConnect(_workspace);
                    if (cloud is not null)
                    {
                        using (cloud)
                        {
                            await cloud.ShutdownAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
                        }
                    }
                }
                if (!created && !keep && Directory.Exists(_workspace))
                {
                    Directory.Delete(_workspace, recursive: true);
                }
            }
        }

        /// <summary>One call to a node's workload API (8080) with the workspace's credential.</summary>
        private static async Task<HttpResponseMessage> WorkloadAsync(HttpMethod method, InstanceInfo node, string path, LocalCloudClient cloud, CancellationToken cancellationToken, string? body = null)
        {
            using var request = new HttpRequestMessage(method, $"http://{node.Address}:{Ports.Workload}/{path}");
            if (body is not null)
            {
                request.Content = new StringContent(body);
            }
            request.Headers.TryAddWithoutValidation("Authorization", cloud.Credential.AuthorizationValue);
            return await Http.SendAsync(request, cancellationToken);
        }

        private void Step(int n, string text)
        {
            stdout.WriteLine();
            stdout.WriteLine($"==> Step {n} [{_clock.Elapsed.TotalSeconds,5:0.0} s] {text}");
        }

        private void Say(string text) => stdout.WriteLine("    " + text);

        private static void Check(bool condition, string failure)
        {
            if (!condition)
            {
                throw new CliError(failure);
            }
        }

        private async Task CliAsync(CancellationToken cancellationToken, params string[] args)
        {
            await stdout.WriteLineAsync($"    $ asterism {string.Join(' ', args)}");
            var output = new IndentingWriter(stdout, "      ");
            var code = await Program.RunAsync([.. args, "-C", _workspace, .. debug ? new[] { "--debug" } : []], output, stderr, cancellationToken);
            await output.FlushAsync(cancellationToken);
            if (code != 0)
            {
                throw new CliError($"'asterism {string.Join(' ', args)}' exited {code}");
            }
        }

        private static async Task<IReadOnlyList<string>> WaitForConsoleAsync(string path, string text, TimeSpan timeout, CancellationToken cancellationToken)
        {
            var deadline = DateTime.UtcNow + timeout;
            while (true)
            {
                if (File.Exists(path))
                {
                    string[] lines;
                    await using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
                    using (var reader = new StreamReader(stream, Encoding.UTF8))
                    {
                        lines = (await reader.ReadToEndAsync(cancellationToken)).Split('\n');
                    }
                    var boot = Array.FindLastIndex(lines, l => l.Contains("Starting disk-mapper", StringComparison.Ordinal));
                    var current = lines.Skip(Math.Max(boot, 0)).Where(l => l.Length > 0).ToList();
                    var hit = current.FindIndex(l => l.Contains(text, StringComparison.Ordinal));
                    if (hit >= 0)
                    {
                        return current.Take(hit + 1).Where(l => !l.Contains("\"DEBUG\"", StringComparison.Ordinal)).TakeLast(8).ToList();
                    }
                }
                if (DateTime.UtcNow > deadline)
                {
                    throw new CliError($"\"{text}\" did not appear in {path}");
                }
                await Task.Delay(200, cancellationToken);
            }
        }
    }

    /// <summary>Indents every line written through it (narration of nested command output).</summary>
    private sealed class IndentingWriter(TextWriter inner, string indent) : TextWriter
    {
        private bool _lineStart = true;

        public override Encoding Encoding => inner.Encoding;

        public override void Write(char value)
        {
            if (_lineStart && value != '\n')
            {
                inner.Write(indent);
            }
            inner.Write(value);
            _lineStart = value == '\n';
        }

        public override void Flush() => inner.Flush();
    }
}
