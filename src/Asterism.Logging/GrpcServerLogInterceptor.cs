using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;

namespace Asterism.Logging;

/// <summary>
/// Logs every finished call of a gRPC server — unary and each streaming kind, whatever its status — as one
/// <see cref="GrpcServerLog"/> line. A handler's <see cref="RpcException"/> logs its own code; a cancelled call
/// logs <c>Canceled</c> (or <c>DeadlineExceeded</c> past its deadline); any other exception logs <c>Unknown</c>, the
/// code grpc-dotnet answers with. It sees messages only as opaque objects and never logs them: requests carry keys.
/// </summary>
public sealed class GrpcServerLogInterceptor(ILogger logger, TimeProvider time) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context,
        UnaryServerMethod<TRequest, TResponse> continuation)
    {
        var (start, timestamp) = (time.GetUtcNow(), time.GetTimestamp());
        try
        {
            var response = await continuation(request, context);
            Finished(context, streaming: false, context.Status.StatusCode, start, timestamp);
            return response;
        }
        catch (Exception e)
        {
            Finished(context, streaming: false, CodeOf(e, context), start, timestamp);
            throw;
        }
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream,
        ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        var (start, timestamp) = (time.GetUtcNow(), time.GetTimestamp());
        try
        {
            var response = await continuation(requestStream, context);
            Finished(context, streaming: true, context.Status.StatusCode, start, timestamp);
            return response;
        }
        catch (Exception e)
        {
            Finished(context, streaming: true, CodeOf(e, context), start, timestamp);
            throw;
        }
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation) =>
        StreamingAsync(context, () => continuation(request, responseStream, context));

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream,
        IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation) =>
        StreamingAsync(context, () => continuation(requestStream, responseStream, context));

    private async Task StreamingAsync(ServerCallContext context, Func<Task> handler)
    {
        var (start, timestamp) = (time.GetUtcNow(), time.GetTimestamp());
        try
        {
            await handler();
            Finished(context, streaming: true, context.Status.StatusCode, start, timestamp);
        }
        catch (Exception e)
        {
            Finished(context, streaming: true, CodeOf(e, context), start, timestamp);
            throw;
        }
    }

    private void Finished(ServerCallContext context, bool streaming, StatusCode code, DateTimeOffset start, long timestamp) =>
        GrpcServerLog.Finished(logger, streaming, context.Method, context.Peer, code,
            TimeZoneInfo.ConvertTime(start, time.LocalTimeZone), time.GetElapsedTime(timestamp));

    private StatusCode CodeOf(Exception e, ServerCallContext context)
    {
        if (e is RpcException rpc)
        {
            return rpc.StatusCode;
        }
        if (context.CancellationToken.IsCancellationRequested)
        {
            return context.Deadline != DateTime.MaxValue && context.Deadline <= time.GetUtcNow().UtcDateTime
                ? StatusCode.DeadlineExceeded
                : StatusCode.Cancelled;
        }
        return StatusCode.Unknown;
    }
}
