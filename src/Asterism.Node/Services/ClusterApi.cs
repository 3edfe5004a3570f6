using Asterism.Cloud;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Asterism.Node.Services;

/// <summary>The cluster API on control-plane nodes (port 6443): health and the node list.</summary>
public static class ClusterApi
{
    public static void Map(WebApplication app, IMetadataClient metadata, string nodeName)
    {
        app.MapGet("/healthz", () => Results.Text("ok"));
        app.MapGet("/api/v1/nodes", async (CancellationToken ct) =>
        {
            var instances = await metadata.ListAsync(ct);
            return Results.Json(new
            {
                servedBy = nodeName,
                nodes = instances.Select(i => new { name = i.Name, role = i.Role, address = i.Address }),
            });
        });
    }
}
