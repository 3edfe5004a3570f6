using System.Globalization;
using System.Text;
using Asterism.Cloud;
using Asterism.ControlPlane;
using Asterism.Logging;
using Asterism.Node.State;
using Etcdserverpb;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Asterism.Node.Services;

/// <summary>
/// The node's workload: a small key-value API (port 8080) whose values are files in <c>workload/</c> on the
/// node's state filesystem, so tests and the demo can check that nothing written before an outage is lost. A PUT is
/// answered only after its file is durable (temp file, fsync, rename, fsync of the directory). Also counts boots.
/// Every request needs the workspace's credential (bearer token), checked against the SHA-256 the provider put into
/// the node directory; without that file the API refuses everything.
/// <para>Cluster data (issue #15 item 7): on a control plane, <c>/cluster-data/KEY</c> keeps values in etcd under
/// <see cref="ClusterDataPrefix"/>, written and read (linearizably) through the node's own etcd client certificate —
/// the workload never gets an etcd credential and cannot name a key outside its prefix (keys have no '/'). Workers
/// answer 404; a control plane without a quorum answers 503, as its JoinService does.</para>
/// </summary>
public static class WorkloadApi
{
    public const int MaxValueBytes = 64 * 1024;

    /// <summary>The workload's share of the disk: it must never fill the filesystem that holds the node's own state.</summary>
    public const int MaxKeys = 256;

    private const int Enospc = 28;

    /// <summary>Counts this boot; a full filesystem is not a reason to refuse booting (returns the old count).</summary>
    public static int CountBoot(NodeStateDirectory state)
    {
        var current = ReadBootCount(state);
        try
        {
            state.Write(NodeStateDirectory.BootCountFile, Encoding.ASCII.GetBytes((current + 1).ToString(CultureInfo.InvariantCulture)));
            return current + 1;
        }
        catch (IOException e) when (IsDiskFull(e))
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

    /// <summary>The workload's etcd keys: below this prefix only, apart from the control plane's own <c>/asterism/</c>.</summary>
    public const string ClusterDataPrefix = "/workload/";

    /// <summary>
    /// Maps the API; <paramref name="controlPlane"/> (control planes only, null on workers) is where cluster data goes
    /// once the node's etcd member runs.
    /// </summary>
    public static void Map(WebApplication app, NodeStateDirectory state, string nodeName, ApiCredentialVerifier verifier, ILogger logger, ControlPlaneAccess? controlPlane = null)
    {
        // Writes are serialised so the key limit holds under concurrent PUTs; reads need no lock (rename is atomic).
        var writes = new SemaphoreSlim(1, 1);
        AtomicFile.CreateDirectory(state.WorkloadDirectory);
        app.RequireCredential(verifier, logger, "workload");
        app.MapGet("/data", () => Results.Json(new { node = nodeName, keys = Keys(state).Order(StringComparer.Ordinal) }));
        app.MapGet("/data/{key}", async (string key) =>
        {
            if (!ValidKey(key))
            {
                return Results.BadRequest(new { error = KeyRule });
            }
            var value = await Task.Run(() => state.ReadOrNull(Path.Combine(NodeStateDirectory.WorkloadFolder, key)));
            return value is null ? Results.NotFound(new { error = "no such key" }) : Results.Bytes(value, "application/octet-stream");
        });
        app.MapPut("/data/{key}", async (string key, HttpRequest request) =>
        {
            if (!ValidKey(key))
            {
                return Results.BadRequest(new { error = KeyRule });
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
            var relative = Path.Combine(NodeStateDirectory.WorkloadFolder, key);
            await writes.WaitAsync(request.HttpContext.RequestAborted);
            try
            {
                if (!File.Exists(state.PathOf(relative)) && Keys(state).Count() >= MaxKeys)
                {
                    return Results.Json(new { error = $"the workload may keep at most {MaxKeys} keys" }, statusCode: StatusCodes.Status507InsufficientStorage);
                }
                // fsync blocks: off the request thread, and the 204 goes out only once the file is durable.
                await Task.Run(() => state.Write(relative, buffer.GetBuffer().AsSpan(0, (int)buffer.Length)));
            }
            catch (IOException e) when (IsDiskFull(e))
            {
                return Results.Json(new { error = "the state disk is full" }, statusCode: StatusCodes.Status507InsufficientStorage);
            }
            finally
            {
                writes.Release();
            }
            return Results.NoContent();
        });
        MapClusterData(app, controlPlane);
        app.MapGet("/boot-count", () => Results.Text(ReadBootCount(state).ToString(CultureInfo.InvariantCulture)));
    }

    private static void MapClusterData(WebApplication app, ControlPlaneAccess? controlPlane)
    {
        app.MapGet("/cluster-data/{key}", async (string key, HttpContext http) =>
        {
            if (!ValidKey(key))
            {
                return Results.BadRequest(new { error = KeyRule });
            }
            return await WithEtcdAsync(controlPlane, async connection =>
            {
                var request = new RangeRequest { Key = ByteString.CopyFromUtf8(ClusterDataPrefix + key) };
                var response = await connection.CallAsync((c, d, ct) => c.GetAsync(request, deadline: d, cancellationToken: ct), http.RequestAborted);
                return response.Kvs.Count == 0 ? Results.NotFound(new { error = "no such key" })
                    : response.Kvs[0].Value.Length > MaxValueBytes ? Results.Json(new { error = "value too large" }, statusCode: StatusCodes.Status502BadGateway)
                    : Results.Bytes(response.Kvs[0].Value.ToByteArray(), "application/octet-stream");
            });
        });
        app.MapPut("/cluster-data/{key}", async (string key, HttpRequest request) =>
        {
            if (!ValidKey(key))
            {
                return Results.BadRequest(new { error = KeyRule });
            }
            var value = await ReadBodyAsync(request);
            if (value is null)
            {
                return Results.BadRequest(new { error = $"value larger than {MaxValueBytes} bytes" });
            }
            return await WithEtcdAsync(controlPlane, async connection =>
            {
                var etcdKey = ClusterDataPrefix + key;
                // The workload's share of etcd, as of the disk: no new key past MaxKeys. Count, then put (etcd 3.4 has no
                // compare on a range's size): concurrent writers may overshoot by their number, never without bound.
                var count = await connection.CallAsync((c, d, ct) => c.GetAsync(new RangeRequest
                {
                    Key = ByteString.CopyFromUtf8(ClusterDataPrefix),
                    RangeEnd = ByteString.CopyFromUtf8(ClusterDataPrefix[..^1] + "0"),
                    CountOnly = true,
                }, deadline: d, cancellationToken: ct), request.HttpContext.RequestAborted);
                var exists = await connection.CallAsync((c, d, ct) => c.GetAsync(new RangeRequest { Key = ByteString.CopyFromUtf8(etcdKey), CountOnly = true }, deadline: d, cancellationToken: ct), request.HttpContext.RequestAborted);
                if (exists.Count == 0 && count.Count >= MaxKeys)
                {
                    return Results.Json(new { error = $"the workload may keep at most {MaxKeys} keys in etcd" }, statusCode: StatusCodes.Status507InsufficientStorage);
                }
                await connection.CallAsync((c, d, ct) => c.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8(etcdKey), Value = ByteString.CopyFrom(value) }, deadline: d, cancellationToken: ct), request.HttpContext.RequestAborted);
                return Results.NoContent();
            });
        });
    }

    /// <summary>Runs <paramref name="action"/> on the node's etcd connection; 404 on a worker, 503 without etcd or quorum.</summary>
    private static async Task<IResult> WithEtcdAsync(ControlPlaneAccess? controlPlane, Func<EtcdConnection, Task<IResult>> action)
    {
        if (controlPlane is null)
        {
            return Results.NotFound(new { error = "cluster data is kept by control-plane nodes" });
        }
        if (controlPlane.Connection is not { } connection)
        {
            return Results.Json(new { error = ControlPlaneException.NoQuorumMessage }, statusCode: StatusCodes.Status503ServiceUnavailable);
        }
        try
        {
            return await action(connection);
        }
        catch (ControlPlaneException)
        {
            return Results.Json(new { error = ControlPlaneException.NoQuorumMessage }, statusCode: StatusCodes.Status503ServiceUnavailable);
        }
        catch (ObjectDisposedException)
        {
            // The connection was withdrawn and disposed mid-call (the node is stopping its member).
            return Results.Json(new { error = ControlPlaneException.NoQuorumMessage }, statusCode: StatusCodes.Status503ServiceUnavailable);
        }
    }

    /// <summary>The request body, or null when it exceeds <see cref="MaxValueBytes"/>.</summary>
    private static async Task<byte[]?> ReadBodyAsync(HttpRequest request)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int read;
        while ((read = await request.Body.ReadAsync(chunk)) > 0)
        {
            if (buffer.Length + read > MaxValueBytes)
            {
                return null;
            }
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    private const string KeyRule = "key must be 1-128 characters of [A-Za-z0-9._-] and not start with a dot";

    private static int ReadBootCount(NodeStateDirectory state) =>
        state.ReadOrNull(NodeStateDirectory.BootCountFile) is { Length: <= 16 } bytes
        && int.TryParse(Encoding.ASCII.GetString(bytes), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : 0;

    /// <summary>The workload's keys: its files, without temporary files of unfinished writes.</summary>
    private static IEnumerable<string> Keys(NodeStateDirectory state) =>
        Directory.Exists(state.WorkloadDirectory)
            ? Directory.EnumerateFiles(state.WorkloadDirectory).Select(Path.GetFileName).OfType<string>().Where(ValidKey)
            : [];

    /// <summary>A key is a file name: no path separators, and no leading dot (".", ".." and temporary files).</summary>
    private static bool ValidKey(string key) =>
        key.Length is > 0 and <= 128 && key[0] != '.' && key.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-');

    private static bool IsDiskFull(IOException e) => (e.HResult & 0xFFFF) == Enospc || e.Message.Contains("No space left", StringComparison.Ordinal);
}
