using Etcdserverpb;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.ControlPlane;

/// <summary>One member as etcd lists it.</summary>
/// <param name="Id">etcd's member id.</param>
/// <param name="Name">Member name; empty until an added member has started.</param>
/// <param name="PeerUrls">Peer URLs.</param>
/// <param name="ClientUrls">Client URLs; empty until an added member has started.</param>
/// <param name="IsLearner">A learner replicates but does not vote.</param>
public sealed record EtcdMemberInfo(ulong Id, string Name, IReadOnlyList<Uri> PeerUrls, IReadOnlyList<Uri> ClientUrls, bool IsLearner);

/// <summary>How many voting members answer and how many a quorum needs.</summary>
/// <param name="Up">Voting members that answered a status call.</param>
/// <param name="Voting">Voting members (learners excluded).</param>
/// <param name="Needed">A majority of <paramref name="Voting"/>.</param>
/// <param name="HasLeader">Whether an answering member knows a leader.</param>
public sealed record QuorumStatus(int Up, int Voting, int Needed, bool HasLeader)
{
    /// <summary>Whether the cluster can decide: a majority up and a leader elected.</summary>
    public bool HasQuorum => Up >= Needed && HasLeader;

    /// <summary>The line <c>status</c> prints, e.g. "etcd: 1 of 3 members up, quorum needs 2".</summary>
    public string Message => $"etcd: {Up} of {Voting} members up, quorum needs {Needed}";

    /// <inheritdoc />
    public override string ToString() => Message;
}

/// <summary>A member just added with MemberAdd and what it must be started with.</summary>
/// <param name="Id">Its member id (for promotion or removal).</param>
/// <param name="InitialCluster">The <c>--initial-cluster</c> list for its first start (state Existing).</param>
public sealed record AddedMember(ulong Id, IReadOnlyList<(string Name, Uri PeerUrl)> InitialCluster);

/// <summary>
/// Cluster membership over an <see cref="EtcdConnection"/>: add (as a learner first, then promote once it has caught
/// up), remove, list, and the quorum status line.
/// </summary>
public sealed class EtcdMembership(EtcdConnection connection, ILogger? logger = null, TimeProvider? time = null)
{
    private readonly EtcdConnection _connection = connection ?? throw new ArgumentNullException(nameof(connection));
    private readonly ILogger _logger = logger ?? NullLogger.Instance;
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <summary>Lists the members (etcd 3.4 answers this from the local member, without quorum).</summary>
    public async Task<IReadOnlyList<EtcdMemberInfo>> ListAsync(CancellationToken cancellationToken = default)
    {
        var response = await _connection.CallAsync((c, d, ct) => c.MemberListAsync(new MemberListRequest(), deadline: d, cancellationToken: ct), cancellationToken);
        return [.. response.Members.Select(ToInfo)];
    }

    /// <summary>
    /// Adds a member by its peer URL. <paramref name="asLearner"/> (the default) adds it as a non-voting learner, so a
    /// member that never starts cannot cost the cluster its quorum; <see cref="PromoteAsync"/> makes it vote. etcd 3.4
    /// allows one learner at a time, so members join one after another. etcd's strict reconfiguration check refuses an
    /// add ("unhealthy cluster") until every member has been connected for 5 s, so a member promoted just before makes
    /// the next add wait; that refusal happens before anything is proposed, so it is retried up to
    /// <paramref name="timeout"/> (default 30 s). A deadline on the add itself is not retried: its outcome is unknown.
    /// </summary>
    public async Task<AddedMember> AddAsync(string name, Uri peerUrl, bool asLearner = true, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        NodeNames.Validate(name);
        ArgumentNullException.ThrowIfNull(peerUrl);
        var existing = await ListAsync(cancellationToken);
        if (existing.Any(m => m.Name == name || m.PeerUrls.Contains(peerUrl)))
        {
            throw new ControlPlaneException(ControlPlaneError.InvalidRequest, $"etcd already has a member {name} or one at {peerUrl}");
        }
        var request = new MemberAddRequest { IsLearner = asLearner };
        request.PeerURLs.Add(peerUrl.ToString().TrimEnd('/'));
        var response = await AddWhenHealthyAsync(request, timeout ?? TimeSpan.FromSeconds(30), cancellationToken);
        ControlPlaneLog.MemberAdded(_logger, name, peerUrl.ToString(), asLearner);
        var cluster = new List<(string, Uri)>();
        foreach (var m in response.Members)
        {
            var memberName = m.ID == response.Member.ID ? name : m.Name;
            foreach (var url in m.PeerURLs)
            {
                cluster.Add((memberName, new Uri(url)));
            }
        }
        return new AddedMember(response.Member.ID, cluster);
    }

    private async Task<MemberAddResponse> AddWhenHealthyAsync(MemberAddRequest request, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var started = _time.GetTimestamp();
        while (true)
        {
            try
            {
                return await _connection.CallAsync((c, d, ct) => c.MemberAddAsync(request, deadline: d, cancellationToken: ct), cancellationToken);
            }
            catch (Grpc.Core.RpcException e) when (e.Status.Detail.Contains("unhealthy cluster", StringComparison.Ordinal) && _time.GetElapsedTime(started) < timeout)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(250), _time, cancellationToken);
            }
        }
    }

    /// <summary>
    /// Promotes a learner to a voting member, retrying while etcd says it has not caught up with the leader, up to
    /// <paramref name="timeout"/>.
    /// </summary>
    public async Task PromoteAsync(ulong memberId, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        var started = _time.GetTimestamp();
        while (true)
        {
            try
            {
                await _connection.CallAsync((c, d, ct) => c.MemberPromoteAsync(new MemberPromoteRequest { ID = memberId }, deadline: d, cancellationToken: ct), cancellationToken);
                ControlPlaneLog.MemberPromoted(_logger, memberId.ToString("x16", System.Globalization.CultureInfo.InvariantCulture));
                return;
            }
            catch (Grpc.Core.RpcException e) when (e.Status.Detail.Contains("in sync", StringComparison.Ordinal) && _time.GetElapsedTime(started) < timeout)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(100), _time, cancellationToken);
            }
        }
    }

    /// <summary>How long <see cref="RemoveAsync"/> waits out etcd's "unhealthy cluster" (its health interval is 5 s); below the CLI's 15 s call deadline.</summary>
    public static readonly TimeSpan RemoveUnhealthyWait = TimeSpan.FromSeconds(10);

    /// <summary>Removes the member named <paramref name="name"/>; refuses to remove the last one.</summary>
    public async Task RemoveAsync(string name, CancellationToken cancellationToken = default)
    {
        NodeNames.Validate(name);
        var members = await ListAsync(cancellationToken);
        var member = members.FirstOrDefault(m => m.Name == name)
            ?? throw new ControlPlaneException(ControlPlaneError.NotFound, $"etcd has no member {name}");
        if (members.Count == 1)
        {
            throw new ControlPlaneException(ControlPlaneError.InvalidRequest, $"{name} is the last etcd member; removing it would destroy the cluster");
        }
        // etcd (--strict-reconfig-check) refuses to remove a voter unless a quorum of the rest has been connected for its
        // 5 s health interval: right after another membership change it says "unhealthy cluster" for a few seconds.
        var started = _time.GetTimestamp();
        while (true)
        {
            try
            {
                await _connection.CallAsync((c, d, ct) => c.MemberRemoveAsync(new MemberRemoveRequest { ID = member.Id }, deadline: d, cancellationToken: ct), cancellationToken);
                break;
            }
            catch (Grpc.Core.RpcException e) when (e.Status.Detail.Contains("unhealthy cluster", StringComparison.Ordinal))
            {
                if (_time.GetElapsedTime(started) >= RemoveUnhealthyWait)
                {
                    throw new ControlPlaneException(ControlPlaneError.Conflict,
                        $"etcd refuses to remove {name}: the remaining members have not all been connected for {RemoveUnhealthyWait.TotalSeconds:0} s, so removing it could cost the quorum; check 'asterism status' and retry");
                }
                await Task.Delay(TimeSpan.FromMilliseconds(250), _time, cancellationToken);
            }
        }
        ControlPlaneLog.MemberRemoved(_logger, name);
    }

    /// <summary>
    /// Asks every voting member for its status (each with <paramref name="perMemberTimeout"/>) and counts who answers.
    /// When no member answers even the member list, reports 0 up of the endpoints the connection knows.
    /// </summary>
    public async Task<QuorumStatus> QuorumStatusAsync(TimeSpan perMemberTimeout, CancellationToken cancellationToken = default)
    {
        IReadOnlyList<EtcdMemberInfo> members;
        try
        {
            members = await ListAsync(cancellationToken);
        }
        catch (ControlPlaneException e) when (e.Error == ControlPlaneError.NoQuorum)
        {
            var known = _connection.Endpoints.Count;
            return new QuorumStatus(0, known, known / 2 + 1, false);
        }
        var voting = members.Where(m => !m.IsLearner).ToList();
        var answers = await Task.WhenAll(voting.Select(m => ProbeAsync(m, perMemberTimeout, cancellationToken)));
        var up = answers.Count(a => a is not null);
        var hasLeader = answers.Any(a => a is { Leader: not 0 });
        return new QuorumStatus(up, voting.Count, voting.Count / 2 + 1, hasLeader);
    }

    private async Task<StatusResponse?> ProbeAsync(EtcdMemberInfo member, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (member.ClientUrls.Count == 0)
        {
            return null;
        }
        try
        {
            return await _connection.CallOneAsync(member.ClientUrls[0], timeout, (c, d, ct) => c.StatusAsync(new StatusRequest(), deadline: d, cancellationToken: ct), cancellationToken);
        }
        catch (ControlPlaneException)
        {
            return null;
        }
        catch (Grpc.Core.RpcException)
        {
            return null;
        }
    }

    private static EtcdMemberInfo ToInfo(Member m) =>
        new(m.ID, m.Name, [.. m.PeerURLs.Select(u => new Uri(u))], [.. m.ClientURLs.Select(u => new Uri(u))], m.IsLearner);
}
