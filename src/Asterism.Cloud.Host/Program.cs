using System.Globalization;
using System.Runtime.InteropServices;
using Asterism.Cloud;
using Asterism.Cloud.Local;
using Asterism.Logging;
using Microsoft.Extensions.Logging;

namespace Asterism.Cloud.Host;

/// <summary>
/// `asterism-cloud --workspace DIR [--health-interval 500ms] [--stop-grace 5s]`: runs the local provider of a
/// workspace until SIGTERM/SIGINT or POST /v1/shutdown, then stops every instance it started and exits.
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        // Before anything is created: every file of the provider, its swtpms and its nodes is the owner's alone.
        OwnerOnly.RestrictProcessUmask();
        if (!TryParse(args, out var options, out var error))
        {
            await Console.Error.WriteLineAsync($"asterism-cloud: {error}\nusage: asterism-cloud --workspace DIR [--health-interval 500ms] [--stop-grace 5s] [--adopt]").ConfigureAwait(false);
            return 2;
        }
        // The house JSON envelope (level, ts, logger, caller, msg, then the fields), as every node's console has it.
        using var loggerFactory = LoggerFactory.Create(b => b
            .AddAsterismJson(Console.Out)
            .AddFilter("Microsoft", LogLevel.Warning));
        var logger = loggerFactory.CreateLogger("asterism-cloud");

        using var stop = new CancellationTokenSource();
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);

        LocalCloudProvider provider;
        try
        {
            provider = await LocalCloudProvider.StartAsync(options!, loggerFactory, stop.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is CloudConfigException or IOException or System.Net.Sockets.SocketException or OperationCanceledException)
        {
            HostLog.ProviderFailedToStart(logger, e.Message);
            return 1;
        }
        await using (provider.ConfigureAwait(false))
        {
            await Task.WhenAny(provider.ShutdownRequested, Task.Delay(Timeout.Infinite, stop.Token)).ConfigureAwait(false);
            await provider.StopAsync().ConfigureAwait(false);
        }
        return 0;

        void OnSignal(PosixSignalContext context)
        {
            // Keep the runtime from exiting at once: the provider must first stop every instance it started.
            context.Cancel = true;
            stop.Cancel();
        }
    }

    internal static bool TryParse(string[] args, out LocalCloudOptions? options, out string error)
    {
        options = null;
        string? workspace = null;
        var lb = new LoadBalancerOptions();
        var grace = TimeSpan.FromSeconds(5);
        var adopt = false;
        for (var i = 0; i < args.Length; i++)
        {
            var value = i + 1 < args.Length ? args[i + 1] : null;
            if (args[i] == "--adopt")
            {
                adopt = true;
                continue;
            }
            switch (args[i])
            {
                case "--workspace" when value is not null:
                    workspace = value;
                    break;
                case "--health-interval" when TryDuration(value, out var d):
                    lb = lb with { HealthInterval = d };
                    break;
                case "--stop-grace" when TryDuration(value, out var d):
                    grace = d;
                    break;
                default:
                    error = $"unknown or incomplete argument '{args[i]}'";
                    return false;
            }
            i++;
        }
        if (workspace is null)
        {
            error = "--workspace is required";
            return false;
        }
        options = new LocalCloudOptions { WorkspaceDir = workspace, LoadBalancer = lb, StopGracePeriod = grace, Adopt = adopt };
        error = "";
        return true;
    }

    /// <summary>"500ms", "2s" or "1m".</summary>
    internal static bool TryDuration(string? s, out TimeSpan value)
    {
        value = default;
        if (s is null)
        {
            return false;
        }
        var (number, unit) = s.EndsWith("ms", StringComparison.Ordinal) ? (s[..^2], 1.0)
            : s.EndsWith('s') ? (s[..^1], 1000.0)
            : s.EndsWith('m') ? (s[..^1], 60000.0)
            : (s, 0.0);
        if (unit == 0 || !double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var n) || n <= 0 || n > 3600)
        {
            return false;
        }
        value = TimeSpan.FromMilliseconds(n * unit);
        return true;
    }
}
