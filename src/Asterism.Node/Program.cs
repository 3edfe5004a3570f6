using System.CommandLine;
using System.Net;
using System.Runtime.InteropServices;
using Asterism.Config;
using Asterism.Logging;

namespace Asterism.Node;

/// <summary>asterism-node: parses the boot arguments and runs <see cref="NodeRuntime"/> until SIGTERM.</summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        // Disk image, attestation key and everything else the node writes: 0600 files, 0700 directories.
        Asterism.Cloud.OwnerOnly.RestrictProcessUmask();
        var name = new Option<string>("--name") { Description = "Node name", Required = true };
        var role = new Option<string>("--role") { Description = "control-plane or worker", Required = true };
        var address = new Option<string>("--address") { Description = "The node's own loopback address", Required = true };
        var disk = new Option<string>("--disk") { Description = "State-disk image file", Required = true };
        var nodeDir = new Option<string>("--node-dir") { Description = "Node directory (attestation key)", Required = true };
        var metadata = new Option<string>("--metadata") { Description = "Cloud metadata API, e.g. http://127.42.7.1:8080", Required = true };
        var variant = new Option<string>("--variant") { Description = "Attestation variant: simulated or tpm", DefaultValueFactory = _ => "simulated" };
        var tpm = new Option<string?>("--tpm") { Description = "swtpm command socket, unix:/abs/path (tpm variant; TCP is refused)" };
        var interval = new Option<string>("--rejoin-interval") { Description = "Pause between rejoin rounds, e.g. 2s", DefaultValueFactory = _ => "30s" };
        var timeout = new Option<string>("--rejoin-timeout") { Description = "Per-call timeout of rejoin requests, e.g. 2s", DefaultValueFactory = _ => "30s" };
        var rotationInterval = new Option<string>("--rotation-interval") { Description = "Pause between a running node's key-rotation rounds, e.g. 5s (each is one attested call to a control plane)", DefaultValueFactory = _ => "30s" };
        var diskSize = new Option<string?>("--disk-size") { Description = "Size of a newly formatted state disk, e.g. 32MiB (default: 256MiB on control planes, 32MiB on workers)" };
        var debug = new Option<bool>("--debug") { Description = "Debug logging" };
        var root = new RootCommand("asterism-node: a node of an Asterism cluster (state-disk boot flow and node services)")
        {
            name, role, address, disk, nodeDir, metadata, variant, tpm, interval, timeout, rotationInterval, diskSize, debug,
        };
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors)
            {
                await Console.Error.WriteLineAsync("asterism-node: " + error.Message);
            }
            return 2;
        }
        if (parsed.Action is not null && parsed.GetValue(name) is null)
        {
            return await parsed.InvokeAsync();
        }
        NodeOptions options;
        try
        {
            options = BuildOptions(parsed, name, role, address, disk, nodeDir, metadata, variant, tpm, interval, timeout, rotationInterval, diskSize, debug);
        }
        catch (ArgumentException ex)
        {
            await Console.Error.WriteLineAsync("asterism-node: " + ex.Message);
            return 2;
        }

        using var loggers = JsonLogging.CreateFactory(Console.Out, options.Debug);
        using var stop = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            stop.Cancel();
        });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, context =>
        {
            context.Cancel = true;
            stop.Cancel();
        });
        try
        {
            return await new NodeRuntime(options, loggers, TimeProvider.System).RunAsync(stop.Token);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            NodeLog.Root.BootFailed(loggers.CreateLogger(NodeLog.Root.Category), ex.GetType().Name + ": " + ex.Message);
            return 1;
        }
    }

    private static NodeOptions BuildOptions(ParseResult parsed, Option<string> name, Option<string> role, Option<string> address,
        Option<string> disk, Option<string> nodeDir, Option<string> metadata, Option<string> variant, Option<string?> tpm,
        Option<string> interval, Option<string> timeout, Option<string> rotationInterval, Option<string?> diskSize, Option<bool> debug)
    {
        if (!NodeRoles.TryParse(parsed.GetValue(role), out var nodeRole))
        {
            throw new ArgumentException("--role must be control-plane or worker");
        }
        if (!IPAddress.TryParse(parsed.GetValue(address), out var ip) || !IPAddress.IsLoopback(ip))
        {
            throw new ArgumentException("--address must be a loopback address (127.0.0.0/8)");
        }
        if (!Uri.TryCreate(parsed.GetValue(metadata), UriKind.Absolute, out var metadataUri)
            || !IPAddress.TryParse(metadataUri.Host, out var metadataIp) || !IPAddress.IsLoopback(metadataIp))
        {
            throw new ArgumentException("--metadata must be an http URL on a loopback address");
        }
        var variantName = parsed.GetValue(variant) ?? "simulated";
        if (variantName is not ("simulated" or "tpm"))
        {
            throw new ArgumentException("--variant must be simulated or tpm");
        }
        return new NodeOptions
        {
            Name = parsed.GetValue(name)!,
            Role = nodeRole,
            Address = ip,
            DiskPath = Path.GetFullPath(parsed.GetValue(disk)!),
            NodeDirectory = Path.GetFullPath(parsed.GetValue(nodeDir)!),
            MetadataEndpoint = metadataUri,
            Variant = variantName,
            TpmEndpoint = parsed.GetValue(tpm),
            RejoinInterval = Durations.Parse(parsed.GetValue(interval)!, "--rejoin-interval"),
            RejoinTimeout = Durations.Parse(parsed.GetValue(timeout)!, "--rejoin-timeout"),
            RotationInterval = Durations.Parse(parsed.GetValue(rotationInterval)!, "--rotation-interval"),
            DiskSize = parsed.GetValue(diskSize) is { } size ? Durations.ParseSize(size, "--disk-size") : NodeOptions.DefaultDiskSize(nodeRole),
            Debug = parsed.GetValue(debug),
        };
    }
}
