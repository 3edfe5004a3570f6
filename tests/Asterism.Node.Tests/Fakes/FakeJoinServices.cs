using System.Collections.Concurrent;
using System.Threading.Channels;
using Asterism.Node.Tickets;
using Asterism.Protocol.Join;
using Grpc.Core;

namespace Asterism.Node.Tests.Fakes;

/// <summary>Endpoint lists from a script: each lookup takes the next answer, the last one repeats.</summary>
public sealed class FakeEndpoints(params Func<CancellationToken, Task<IReadOnlyList<string>>>[] answers) : IJoinEndpointSource
{
    private int _lookups;

    public int Lookups => Volatile.Read(ref _lookups);

    public static FakeEndpoints Of(params string[] endpoints) => new(_ => Task.FromResult<IReadOnlyList<string>>(endpoints));

    public Task<IReadOnlyList<string>> GetEndpointsAsync(CancellationToken cancellationToken)
    {
        var n = Interlocked.Increment(ref _lookups);
        return answers[Math.Min(n, answers.Length) - 1](cancellationToken);
    }
}

/// <summary>
/// JoinServices without a network: each endpoint answers with a handler the test sets (keys, a refusal, or a hang
/// until the caller's token fires). Every call is recorded in order.
/// </summary>
public sealed class FakeTicketClient : ITicketClient
{
    private readonly ConcurrentDictionary<string, Func<string, CancellationToken, Task<IssueRejoinTicketResponse>>> _rejoin = new();
    private readonly ConcurrentDictionary<string, Func<IssueJoinTicketRequest, CancellationToken, Task<IssueJoinTicketResponse>>> _join = new();
    private readonly Channel<string> _calls = Channel.CreateUnbounded<string>();
    private readonly ConcurrentQueue<string> _log = new();

    public IReadOnlyList<string> Calls => [.. _log];

    public void OnRejoin(string endpoint, Func<string, CancellationToken, Task<IssueRejoinTicketResponse>> handler) => _rejoin[endpoint] = handler;

    public void OnJoin(string endpoint, Func<IssueJoinTicketRequest, CancellationToken, Task<IssueJoinTicketResponse>> handler) => _join[endpoint] = handler;

    /// <summary>A JoinService that accepts the connection and never answers: only the caller's deadline ends the call.</summary>
    public static async Task<T> Hang<T>(CancellationToken cancellationToken)
    {
        await Task.Delay(Timeout.Infinite, cancellationToken);
        throw new InvalidOperationException("unreachable");
    }

    public static Task<T> Refuse<T>(StatusCode code, string detail) => Task.FromException<T>(new RpcException(new Status(code, detail)));

    /// <summary>Waits until the next call reaches an endpoint and returns that endpoint.</summary>
    public async Task<string> NextCallAsync()
    {
        using var limit = new CancellationTokenSource(TestLimits.Hang);
        return await _calls.Reader.ReadAsync(limit.Token);
    }

    public Task<IssueRejoinTicketResponse> IssueRejoinTicketAsync(string endpoint, IssueRejoinTicketRequest request, CancellationToken cancellationToken)
    {
        Record(endpoint);
        return _rejoin.TryGetValue(endpoint, out var handler)
            ? handler(request.DiskUuid, cancellationToken)
            : Refuse<IssueRejoinTicketResponse>(StatusCode.Unavailable, "connection refused");
    }

    public Task<IssueJoinTicketResponse> IssueJoinTicketAsync(string endpoint, IssueJoinTicketRequest request, CancellationToken cancellationToken)
    {
        Record(endpoint);
        return _join.TryGetValue(endpoint, out var handler)
            ? handler(request, cancellationToken)
            : Refuse<IssueJoinTicketResponse>(StatusCode.Unavailable, "connection refused");
    }

    private void Record(string endpoint)
    {
        _log.Enqueue(endpoint);
        _calls.Writer.TryWrite(endpoint);
    }
}
