namespace Asterism.Tpm.Tests;

/// <summary>The client's retry, error and hostile-response handling, against scripted TPM answers.</summary>
public sealed class TpmClientScriptedTests
{
    private static readonly byte[] RandomResponse = [0x80, 0x01, 0, 0, 0, 16, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4];

    [Fact]
    public async Task Transmit_RetryYieldedTesting_ResendsSameCommandWithGrowingDelay()
    {
        var transport = new ScriptedTransport(ScriptedTransport.Error(0x922), ScriptedTransport.Error(0x908), ScriptedTransport.Error(0x90A), RandomResponse);
        var time = new ImmediateTimeProvider();
        await using var client = new TpmClient(transport, new TpmClientOptions { TimeProvider = time, RetryDelay = TimeSpan.FromMilliseconds(2) });

        var bytes = await client.GetRandomAsync(4, CancellationToken.None);

        Assert.Equal([1, 2, 3, 4], bytes);
        Assert.Equal(4, transport.Commands.Count);
        Assert.All(transport.Commands, c => Assert.Equal(transport.Commands[0], c));
        Assert.Equal([TimeSpan.FromMilliseconds(2), TimeSpan.FromMilliseconds(4), TimeSpan.FromMilliseconds(8)], time.Delays);
    }

    [Fact]
    public async Task Transmit_RetryForever_GivesUpAfterBoundWithRetryCode()
    {
        var transport = new ScriptedTransport(ScriptedTransport.Error(0x922));
        await using var client = new TpmClient(transport, new TpmClientOptions { TimeProvider = new ImmediateTimeProvider(), MaxRetries = 5 });

        var e = await Assert.ThrowsAsync<TpmException>(() => client.GetRandomAsync(4, CancellationToken.None));

        Assert.Equal(6, transport.Commands.Count);
        Assert.Equal(TpmResponseCode.Retry, e.ResponseCode!.Value.Value);
        Assert.Equal("TPM2_GetRandom failed: TPM_RC_RETRY (0x922)", e.Message);
    }

    [Fact]
    public async Task GetRandom_Command_MarshalledBigEndianWithoutSessions()
    {
        var transport = new ScriptedTransport(RandomResponse);
        await using var client = new TpmClient(transport);
        await client.GetRandomAsync(4, CancellationToken.None);
        Assert.Equal([0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7B, 0, 4], transport.Commands[0]);
    }

    [Fact]
    public async Task PcrExtend_Command_CarriesPasswordSession()
    {
        var ok = new byte[] { 0x80, 0x02, 0, 0, 0, 19, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0 };
        var transport = new ScriptedTransport(ok);
        await using var client = new TpmClient(transport);
        await client.PcrExtendAsync(7, new byte[32], CancellationToken.None);
        var c = transport.Commands[0];
        byte[] expectedHead = [0x80, 0x02, 0, 0, 0, 65, 0, 0, 0x01, 0x82, 0, 0, 0, 7, 0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 0x01, 0, 0, 0, 0, 0, 1, 0, 0x0B];
        Assert.Equal(expectedHead, c[..expectedHead.Length]);
        Assert.Equal(65, c.Length);
    }

    public static TheoryData<byte[]> HostileRandomResponses() => new()
    {
        Array.Empty<byte>(),
        new byte[] { 0x80, 0x01, 0, 0 },
        new byte[] { 0x80, 0x01, 0, 0, 0, 99, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4 }, // size lies
        new byte[] { 0x12, 0x34, 0, 0, 0, 16, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4 }, // unknown tag
        new byte[] { 0x80, 0x02, 0, 0, 0, 16, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4 }, // sessions tag without sessions
        new byte[] { 0x80, 0x01, 0, 0, 0, 16, 0, 0, 0, 0, 0, 9, 1, 2, 3, 4 }, // TPM2B longer than asked and than data
        new byte[] { 0x80, 0x01, 0, 0, 0, 17, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4, 5 }, // trailing byte
        new byte[] { 0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x01, 0, 0 }, // error code with a body
        new byte[] { 0x80, 0x01, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0 }, // zero random bytes
    };

    [Theory]
    [MemberData(nameof(HostileRandomResponses))]
    public async Task GetRandom_HostileResponse_TpmException(byte[] response)
    {
        await using var client = new TpmClient(new ScriptedTransport(response));
        var e = await Assert.ThrowsAnyAsync<TpmException>(() => client.GetRandomAsync(4, CancellationToken.None));
        Assert.Null(e.ResponseCode);
    }

    [Fact]
    public async Task PcrRead_TpmReturnsNothing_ThrowsInsteadOfLooping()
    {
        byte[] empty = [0x80, 0x01, 0, 0, 0, 22, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        await using var client = new TpmClient(new ScriptedTransport(empty));
        var e = await Assert.ThrowsAsync<TpmException>(() => client.PcrReadAsync([3], CancellationToken.None));
        Assert.Contains("does not hold PCR", e.Message);
    }

    [Fact]
    public async Task PcrRead_TpmReturnsUnrequestedPcr_FormatException()
    {
        var w = new TpmWriter().WriteUInt16(0x8001).WriteUInt32(0).WriteUInt32(0).WriteUInt32(1);
        TpmPcrSelection.Sha256([4]).WriteList(w);
        w.WriteUInt32(1).WriteSized(new byte[32]);
        var response = w.ToArray();
        response[5] = (byte)response.Length;
        await using var client = new TpmClient(new ScriptedTransport(response));
        await Assert.ThrowsAsync<TpmFormatException>(() => client.PcrReadAsync([3], CancellationToken.None));
    }

    [Fact]
    public async Task AllCommands_RandomResponses_OnlyTpmExceptions()
    {
        var rng = new Random(4242);
        for (var i = 0; i < 400; i++)
        {
            var body = new byte[rng.Next(0, 120)];
            rng.NextBytes(body);
            var tag = i % 2 == 0 ? (byte)0x01 : (byte)0x02;
            byte[] response = [0x80, tag, 0, 0, 0, (byte)(10 + body.Length), 0, 0, 0, 0, .. body];
            await using var client = new TpmClient(new ScriptedTransport(response), new TpmClientOptions { TimeProvider = new ImmediateTimeProvider() });
            await Swallow(() => client.GetRandomAsync(8, CancellationToken.None));
            await Swallow(() => client.PcrReadAsync([0, 1, 2], CancellationToken.None));
            await Swallow(() => client.PcrEventAsync(15, new byte[3], CancellationToken.None));
            await Swallow(() => client.CreatePrimaryAsync(TpmHierarchy.Endorsement, TpmAttestationKey.Template(), default, CancellationToken.None));
            await Swallow(() => client.ReadPublicAsync(0x80000000, CancellationToken.None));
            await Swallow(() => client.QuoteAsync(0x80000000, default, new byte[32], TpmPcrSelection.Sha256([0]), CancellationToken.None));
        }
    }

    private static async Task Swallow(Func<Task> action)
    {
        try
        {
            await action();
        }
        catch (TpmException)
        {
        }
    }

    /// <summary>Records requested delays and fires them at once, so retry tests never sleep.</summary>
    private sealed class ImmediateTimeProvider : TimeProvider
    {
        public List<TimeSpan> Delays { get; } = [];

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            Delays.Add(dueTime);
            ThreadPool.QueueUserWorkItem(_ => callback(state));
            return new NoTimer();
        }

        private sealed class NoTimer : ITimer
        {
            public bool Change(TimeSpan dueTime, TimeSpan period) => true;

            public void Dispose()
            {
            }

            public ValueTask DisposeAsync() => ValueTask.CompletedTask;
        }
    }
}
