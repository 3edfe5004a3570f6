using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Asterism.Cloud;

/// <summary>
/// Middleware that puts the workspace's credential in front of an HTTP API. It runs before routing, so a route
/// added later is covered without anyone remembering to protect it. Refusals get a generic message (401 without
/// a credential, 403 with a wrong one) and a log line naming the peer; nothing about the token is revealed.
/// </summary>
public static class ApiAuthorization
{
    public const string MissingMessage = "this API requires the workspace's credential";
    public const string WrongMessage = "credential refused";

    /// <summary>
    /// Requires a valid credential for every request <paramref name="needsCredential"/> selects (null: every request).
    /// <paramref name="api"/> names the API in log lines.
    /// </summary>
    public static void RequireCredential(this WebApplication app, ApiCredentialVerifier verifier, ILogger logger, string api, Func<HttpRequest, bool>? needsCredential = null)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(verifier);
        app.Use(async (context, next) =>
        {
            if (needsCredential is not null && !needsCredential(context.Request))
            {
                await next(context).ConfigureAwait(false);
                return;
            }
            var check = verifier.Check(context.Request.Headers.Authorization.ToString());
            if (check == CredentialCheck.Valid)
            {
                await next(context).ConfigureAwait(false);
                return;
            }
            var peer = $"{context.Connection.RemoteIpAddress}:{context.Connection.RemotePort}";
            Local.Log.ApiRequestRefused(logger, api, context.Request.Method, context.Request.Path.ToString(), peer, Reason(check));
            var wrong = check == CredentialCheck.Wrong;
            context.Response.StatusCode = wrong ? StatusCodes.Status403Forbidden : StatusCodes.Status401Unauthorized;
            if (!wrong)
            {
                context.Response.Headers.WWWAuthenticate = "Bearer";
            }
            await context.Response.WriteAsJsonAsync(new ErrorResponse { Error = wrong ? WrongMessage : MissingMessage }, CloudJson.Options).ConfigureAwait(false);
        });
    }

    /// <summary>GET and HEAD only read; every other method changes something and needs the credential.</summary>
    public static bool IsMutating(HttpRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return !(HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method));
    }

    private static string Reason(CredentialCheck check) => check switch
    {
        CredentialCheck.Missing => "no credential",
        CredentialCheck.Wrong => "wrong credential",
        _ => "no credential configured on this side",
    };
}
