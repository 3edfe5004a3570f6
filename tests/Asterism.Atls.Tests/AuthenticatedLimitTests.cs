using Asterism.Tests;
using Grpc.Net.Client;

namespace Asterism.Atls.Tests;

/// <summary>
/// A local process that completes handshakes and then keeps its connections open (anyone can, where only the server
/// attests): the listener holds at most MaxAuthenticatedConnections of them, and the operator still gets in.
/// </summary>
public sealed class AuthenticatedLimitTests : IDisposable
{
    private const int Cap = 4;
    private const int Hoarded = 12;

    // One attesting node serves both directions: only one side attests in each.
    private readonly Node _node = new();
    private readonly CollectingLoggerProvider _logs = new();

    public void Dispose() => _node.Dispose();

    [Theory]
    [InlineData("server")]
    [InlineData("client")]
    public async Task Ping_ManyHeldAuthenticatedConnections_CapHoldsAndLegitimateClientConnects(string direction)
    {
        HandshakeBudget? budget = null;
        var open = 0;
        void Configure(AtlsServerOptions o)
        {
            o.LoggerFactory = _logs.Factory();
            o.MaxAuthenticatedConnections = Cap;
            o.BudgetCreated = b => budget = b;
        }
        await using var server = await ProbeServer.StartAsync(l =>
        {
            // Outside the aTLS middleware: counts every connection the server holds, authenticated or not.
            l.Use(next => async connection =>
            {
                Interlocked.Increment(ref open);
                try
                {
                    await next(connection);
                }
                finally
                {
                    Interlocked.Decrement(ref open);
                }
            });
            _ = direction == "server"
                ? l.UseAtlsServer(_node.Issuer(), Configure)
                : l.UseAtlsClientValidation(_node.Validator(_logs), Configure);
        }, _logs);
        HttpMessageHandler Handler() => direction == "server"
            ? AtlsClient.CreateHandler(_node.Validator(_logs))
            : AtlsClient.CreateAttestingHandler(_node.Issuer());

        // The attacker: each channel authenticates once and keeps its HTTP/2 connection pooled and open.
        var hoard = new List<GrpcChannel>();
        try
        {
            for (var i = 0; i < Hoarded; i++)
            {
                var channel = GrpcChannel.ForAddress(server.Address, new GrpcChannelOptions { HttpHandler = Handler(), DisposeHttpClient = true });
                hoard.Add(channel);
                await new Probe.Prober.ProberClient(channel).PingAsync(new Probe.PingRequest { Text = "hoard" });
            }
            Assert.True(await Poll.UntilAsync(() => Volatile.Read(ref open) <= Cap, Poll.Hang, TimeSpan.FromMilliseconds(20)),
                $"the server still holds {Volatile.Read(ref open)} connections, more than {Cap}");

            var reply = await server.PingAsync(Handler(), "operator");

            Assert.Equal("operator", reply.Text);
            Assert.NotNull(budget);
            Assert.Equal(Cap, budget.MaxObservedAuthenticated);
            Assert.True(budget.AuthenticatedShed >= Hoarded + 1 - Cap, $"shed {budget.AuthenticatedShed}");
        }
        finally
        {
            foreach (var channel in hoard)
            {
                channel.Dispose();
            }
        }
    }
}
