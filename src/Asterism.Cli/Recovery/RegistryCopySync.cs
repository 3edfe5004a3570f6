using Asterism.Protocol.ClusterApi;

namespace Asterism.Cli.Recovery;

/// <summary>
/// Keeps the workspace's registry copy current from the cluster API: after `node revoke` and `node remove`, and
/// whenever `node list`, `status` or `init` hear from it. A copy that cannot be written is a warning: the cluster's own
/// change already happened, and the next command that reaches the API tries again.
/// </summary>
public static class RegistryCopySync
{
    /// <summary>The line after a revocation, naming the copy recover reads.</summary>
    public static string RevokedLine(string name, RegistryCopy copy) =>
        $"Registry copy {copy.Path} updated (sequence {copy.Sequence}): 'asterism recover' refuses {name} too, even with the whole control plane down.";

    /// <summary>The warning when the copy could not be updated.</summary>
    public static string NotUpdatedLine(string why) => "Warning: the registry copy was not updated: " + why;

    /// <summary>
    /// Merges <paramref name="listed"/> (null when the list call failed) and <paramref name="revokedNow"/> into the copy.
    /// Null, after writing one warning line to <paramref name="stderr"/>, when it could not be written.
    /// </summary>
    public static RegistryCopy? TryRefresh(Workspace workspace, ListNodesResponse? listed, string? revokedNow, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        ArgumentNullException.ThrowIfNull(stderr);
        try
        {
            var clusterId = workspace.LoadState().ClusterValues.ClusterId
                ?? throw new CliError("the workspace state has no cluster ID (not initialized)");
            return new RegistryCopyStore(workspace.Directory).Refresh(clusterId, listed is null ? null : RegistryCopyStore.FromCluster(listed), revokedNow);
        }
        catch (Exception e) when (e is CliError or IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine(NotUpdatedLine(e is CliError ? e.Message : $"{e.GetType().Name} writing {new RegistryCopyStore(workspace.Directory).CopyPath}"));
            return null;
        }
    }

    /// <summary>Lists the registry through <paramref name="client"/>; null when the call fails (the caller's change stands).</summary>
    public static async Task<ListNodesResponse?> TryListAsync(ClusterApiClient client, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        try
        {
            return await client.Api.ListNodesAsync(new ListNodesRequest(), deadline: ClusterApiClient.Deadline(), cancellationToken: cancellationToken);
        }
        catch (Grpc.Core.RpcException) when (!cancellationToken.IsCancellationRequested)
        {
            return null;
        }
    }

    /// <summary>
    /// `status` and `init`: when the cluster API answers, the copy is refreshed from its list; when it does not, nothing
    /// is said (those commands report the API's health themselves).
    /// </summary>
    public static async Task RefreshQuietlyAsync(Workspace workspace, TextWriter stderr, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        AdminCredential credential;
        try
        {
            credential = AdminCredential.Load(workspace.Directory);
        }
        catch (CliError)
        {
            return;
        }
        using (credential)
        using (var client = new ClusterApiClient(credential, TimeSpan.FromSeconds(1)))
        {
            if (await TryListAsync(client, cancellationToken) is { } listed)
            {
                TryRefresh(workspace, listed, null, stderr);
            }
        }
    }
}
