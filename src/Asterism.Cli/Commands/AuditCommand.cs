using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Asterism.Protocol.ClusterApi;
using Grpc.Core;

namespace Asterism.Cli.Commands;

/// <summary>
/// <c>asterism audit [--since T] [--json]</c>: the control plane's audit log through the cluster API, and the verdict of
/// its hash chain (the first broken link is named; exit code 1 when the chain is broken).
/// </summary>
public static class AuditCommand
{
    /// <summary>No operator reads more than this many entries in a terminal; the chain is still verified whole.</summary>
    private const int MaxEntries = 1_000_000;

    public static Command Create(GlobalOptions global)
    {
        var since = new Option<string?>("--since") { Description = "Only entries at or after T: an ISO 8601 time (2025-01-31T12:00:00Z) or a duration back from now (90s, 10m, 2h, 7d)" };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var command = new Command("audit", "Print the control plane's audit log and verify its hash chain") { since, json };
        command.SetAction(async (result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var from = ParseSince(result.GetValue(since), DateTimeOffset.UtcNow);
            using var credential = AdminCredential.Load(global.WorkspaceOf(result));
            using var client = new ClusterApiClient(credential);
            var entries = new List<AuditEntry>();
            AuditVerification? verification = null;
            try
            {
                using var call = client.Api.Audit(new AuditRequest { SinceUnixMs = from?.ToUnixTimeMilliseconds() ?? 0 }, deadline: ClusterApiClient.Deadline(), cancellationToken: cancellationToken);
                await foreach (var message in call.ResponseStream.ReadAllAsync(cancellationToken))
                {
                    if (message.ItemCase == AuditMessage.ItemOneofCase.Entry && entries.Count < MaxEntries && verification is null)
                    {
                        entries.Add(message.Entry);
                    }
                    else if (message.ItemCase == AuditMessage.ItemOneofCase.Verification)
                    {
                        verification = message.Verification;
                    }
                }
            }
            catch (RpcException e)
            {
                throw client.ToCliError(e);
            }
            if (verification is null)
            {
                throw new CliError($"cluster API at {client.Server} ended the audit log without verifying it");
            }
            if (result.GetValue(json))
            {
                await stdout.WriteLineAsync(ToJson(entries, verification));
            }
            else
            {
                foreach (var e in entries)
                {
                    await stdout.WriteLineAsync($"{e.Sequence,6}  {Time(e.TimeUnixMs)}  {e.Kind,-16} {e.Node,-20} {e.Detail}");
                }
                await stdout.WriteLineAsync(verification.Message);
            }
            return verification.Intact ? 0 : 1;
        });
        return command;
    }

    /// <summary>"--since": an absolute time (UTC unless it says otherwise) or a duration back from <paramref name="now"/>.</summary>
    internal static DateTimeOffset? ParseSince(string? value, DateTimeOffset now)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            return null;
        }
        if (DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var at))
        {
            return at;
        }
        var unit = value[^1] switch
        {
            's' => TimeSpan.FromSeconds(1),
            'm' => TimeSpan.FromMinutes(1),
            'h' => TimeSpan.FromHours(1),
            'd' => TimeSpan.FromDays(1),
            _ => TimeSpan.Zero,
        };
        if (unit > TimeSpan.Zero && value.Length <= 12 && long.TryParse(value[..^1], NumberStyles.None, CultureInfo.InvariantCulture, out var count) && count <= 100_000)
        {
            return now - unit * count;
        }
        throw new CliError($"--since: '{value}' is neither a time (2025-01-31T12:00:00Z) nor a duration (90s, 10m, 2h, 7d)", 2);
    }

    private static string Time(long unixMs) =>
        DateTimeOffset.FromUnixTimeMilliseconds(unixMs).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    private static string ToJson(List<AuditEntry> entries, AuditVerification verification)
    {
        var array = new JsonArray();
        foreach (var e in entries)
        {
            array.Add(new JsonObject
            {
                ["sequence"] = e.Sequence,
                ["time"] = Time(e.TimeUnixMs),
                ["kind"] = e.Kind,
                ["node"] = e.Node,
                ["detail"] = e.Detail,
                ["previous"] = e.Previous,
                ["hash"] = e.Hash,
            });
        }
        var root = new JsonObject
        {
            ["entries"] = array,
            ["verification"] = new JsonObject
            {
                ["intact"] = verification.Intact,
                ["entries"] = verification.Entries,
                ["brokenAt"] = verification.Intact ? null : verification.BrokenAt,
                ["reason"] = verification.Intact ? null : verification.Reason,
                ["message"] = verification.Message,
            },
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = false });
    }
}
