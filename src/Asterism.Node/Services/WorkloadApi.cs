using System.Text;
using Asterism.Cloud;
using Asterism.Disk;
using Asterism.Logging;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Services;

/// <summary>
/// The node's workload: a small key-value API (port 8080) whose data lives on the encrypted state disk, so tests
/// and the demo can check that nothing written before an outage is lost. Also counts boots. Every request needs
/// the workspace's credential (bearer token), checked against the SHA-256 the provider put into the node
/// directory; without that file the API refuses everything.
/// </summary>
public static class WorkloadApi
{
    public const string Prefix = "workload/";
    public const string BootCountRecord = "workload-meta/boot-count";
    public const int MaxValueBytes = 64 * 1024;

    /// <summary>The workload's share of the store: it must never fill the disk that holds the node's own state.</summary>
    public const int MaxKeys = 256;

    /// <summary>Counts this boot; a full store is not a reason to refuse booting (returns the old count).</summary>
    public static int CountBoot(RecordStore store)
    {
        var current = store.Get(BootCountRecord) is { } bytes && int.TryParse(Encoding.ASCII.GetString(bytes), out var n) ? n : 0;
        try
        {
            store.Put(BootCountRecord, Encoding.ASCII.GetBytes((current + 1).ToString(System.Globalization.CultureInfo.InvariantCulture)));
            return current + 1;
        }
        catch (RecordStoreFullException)
        {
            return current;
        }
    }

    /// <summary>The verifier for this node's workload callers; logs why it refuses everything when the hash file is unusable.</summary>
    public static ApiCredentialVerifier LoadVerifier(string nodeDirectory, ILogger logger)
    {
        var verifier = ApiCredentialVerifier.LoadHashFile(Path.Combine(nodeDirectory, ApiCredential.HashFileName), out var problem);
        if (problem is not null)
        {
            NodeLog.Workload.RefusesEveryRequest(logger, problem);
        }
        return verifier;
    }

    public static void Map(WebApplication app, RecordStore store, string nodeName, ApiCredentialVerifier verifier, ILogger logger)
    {
        app.RequireCredential(verifier, logger, "workload");
        app.MapGet("/data", () => Results.Json(new { node = nodeName, keys = store.Names.Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)).Select(n => n[Prefix.Length..]).Order(StringComparer.Ordinal) }));
        app.MapGet("/data/{key}", (string key) =>
        {
            if (!ValidKey(key))
            {
                return Results.BadRequest(new { error = "key must be 1-128 characters of [A-Za-z0-9._-]" });
            }
            var value = store.Get(Prefix + key);
            return value is null ? Results.NotFound(new { error = "no such key" }) : Results.Bytes(value, "application/octet-stream");
        });
        app.MapPut("/data/{key}", async (string key, HttpRequest request) =>
        {
            if (!ValidKey(key))
            {
                return Results.BadRequest(new { error = "key must be 1-128 characters of [A-Za-z0-9._-]" });
            }
            using var buffer = new MemoryStream();
            var chunk = new byte[8192];
            int read;
            while ((read = await request.Body.ReadAsync(chunk)) > 0)
            {
                if (buffer.Length + read > MaxValueBytes)
                {
                    return Results.BadRequest(new { error = $"value larger than {MaxValueBytes} bytes" });
                }
                buffer.Write(chunk, 0, read);
            }
            var name = Prefix + key;
            if (store.Get(name) is null && store.Names.Count(n => n.StartsWith(Prefix, StringComparison.Ordinal)) >= MaxKeys)
            {
                return Results.Json(new { error = $"the workload may keep at most {MaxKeys} keys" }, statusCode: StatusCodes.Status507InsufficientStorage);
            }
            try
            {
                store.Put(name, buffer.ToArray());
            }
            catch (RecordStoreFullException)
            {
                return Results.Json(new { error = "the state disk is full" }, statusCode: StatusCodes.Status507InsufficientStorage);
            }
            return Results.NoContent();
        });
        app.MapGet("/boot-count", () => Results.Text(Encoding.ASCII.GetString(store.Get(BootCountRecord) ?? "0"u8.ToArray())));
    }

    private static bool ValidKey(string key) =>
        key.Length is > 0 and <= 128 && key.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-');
}
