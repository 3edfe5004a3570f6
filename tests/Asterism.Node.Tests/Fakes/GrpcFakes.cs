using System.Threading.Channels;
using Asterism.Atls;
using Grpc.Core;
using Microsoft.AspNetCore.Http;

namespace Asterism.Node.Tests.Fakes;

/// <summary>
/// A server call without a network: the peer the aTLS layer would have attested (or none), and an HttpContext the
/// service can reach through GetHttpContext (grpc-dotnet looks it up under "__HttpContext" for tests).
/// </summary>
public sealed class FakeCallContext : ServerCallContext
{
    private readonly Dictionary<object, object> _userState = [];
    private readonly CancellationToken _cancellationToken;

    public FakeCallContext(AtlsPeer? peer = null, CancellationToken cancellationToken = default)
    {
        var http = new DefaultHttpContext();
        if (peer is not null)
        {
            http.Features.Set<IAtlsPeerFeature>(new PeerFeature(peer));
        }
        _userState["__HttpContext"] = http;
        _cancellationToken = cancellationToken;
    }

    protected override string MethodCore => "test";

    protected override string HostCore => "127.0.0.1";

    protected override string PeerCore => "ipv4:127.0.0.9:40000";

    protected override DateTime DeadlineCore => DateTime.MaxValue;

    protected override Metadata RequestHeadersCore { get; } = [];

    protected override CancellationToken CancellationTokenCore => _cancellationToken;

    protected override Metadata ResponseTrailersCore { get; } = [];

    protected override Status StatusCore { get; set; }

    protected override WriteOptions? WriteOptionsCore { get; set; }

    protected override AuthContext AuthContextCore { get; } = new(null, []);

    protected override IDictionary<object, object> UserStateCore => _userState;

    protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) =>
        throw new NotSupportedException();

    protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders) => Task.CompletedTask;

    private sealed record PeerFeature(AtlsPeer Peer) : IAtlsPeerFeature;
}

/// <summary>The client's side of a stream, written by the test: messages, then (or never) the half-close.</summary>
public sealed class FakeRequestStream<T> : IAsyncStreamReader<T>
    where T : class
{
    private readonly Channel<T> _messages = Channel.CreateUnbounded<T>();

    public T Current { get; private set; } = null!;

    public void Send(T message) => _messages.Writer.TryWrite(message);

    public void HalfClose() => _messages.Writer.TryComplete();

    public async Task<bool> MoveNext(CancellationToken cancellationToken)
    {
        if (!await _messages.Reader.WaitToReadAsync(cancellationToken))
        {
            return false;
        }
        Current = await _messages.Reader.ReadAsync(cancellationToken);
        return true;
    }
}

/// <summary>What the server wrote back.</summary>
public sealed class FakeResponseStream<T> : IServerStreamWriter<T>
{
    private readonly Channel<T> _written = Channel.CreateUnbounded<T>();

    public WriteOptions? WriteOptions { get; set; }

    public Task WriteAsync(T message)
    {
        _written.Writer.TryWrite(message);
        return Task.CompletedTask;
    }

    public Task WriteAsync(T message, CancellationToken cancellationToken) => WriteAsync(message);

    /// <summary>The next message the server writes, bounded in real time as a guard against hangs.</summary>
    public async Task<T> NextAsync()
    {
        using var limit = new CancellationTokenSource(TestLimits.Hang);
        return await _written.Reader.ReadAsync(limit.Token);
    }
}
