using Grpc.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Asterism.Atls;

/// <summary>Access to the attested client of the connection a call arrived on.</summary>
public static class AtlsPeerExtensions
{
    /// <summary>The attested peer, or null when the connection was not set up by <c>UseAtlsClientValidation</c>.</summary>
    public static AtlsPeer? GetAtlsPeer(this IFeatureCollection features)
    {
        ArgumentNullException.ThrowIfNull(features);
        return features.Get<IAtlsPeerFeature>()?.Peer;
    }

    public static AtlsPeer? GetAtlsPeer(this HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.Features.GetAtlsPeer();
    }

    public static AtlsPeer? GetAtlsPeer(this ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.GetHttpContext().GetAtlsPeer();
    }
}
