using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Win32.SafeHandles;

namespace Asterism.Tpm.Tests;

/// <summary>
/// The character-device transport over a FileStream on one end of a Unix socket pair (no /dev/tpmrm0 here); the
/// other end replays responses recorded from a real swtpm in the same test, checking each command byte for byte.
/// </summary>
public sealed class TpmDeviceTransportTests
{
    private static readonly byte[] Nonce = SHA256.HashData("device nonce"u8);

    [Fact]
    public async Task Client_OverDeviceStream_SameResultsAsSwtpmSession()
    {
        List<(byte[] Command, byte[] Response)> recorded;
        ScriptResult expected;
        await using (var swtpm = await TestSwtpm.StartAsync())
        {
            var recording = new RecordingTransport(await SwtpmSocketTransport.ConnectAsync(swtpm.Process.SocketPath, 8192, CancellationToken.None));
            await using var client = new TpmClient(recording);
            expected = await RunScriptAsync(client);
            recorded = recording.Exchanges;
        }

        using var pair = await SocketPair.CreateAsync();
        var device = Task.Run(() => ReplayAsync(pair.Device, recorded));
        await using (var client = new TpmClient(new TpmDeviceTransport(pair.OpenClientFileStream(), 8192)))
        {
            var actual = await RunScriptAsync(client);
            Assert.Equal(expected.PublicArea, actual.PublicArea);
            Assert.Equal(expected.Attest, actual.Attest);
            Assert.Equal(expected.Signature, actual.Signature);
            Assert.Equal(expected.Pcrs, actual.Pcrs);
            var key = TpmEccPublicKey.Parse(actual.PublicArea);
            var pcrs = actual.Pcrs.Where(p => p.Key is 0 or 15).ToDictionary();
            Assert.True(TpmQuoteVerifier.Verify(key, actual.Attest, actual.Signature, Nonce, pcrs).IsValid);
        }
        Assert.Equal(recorded.Count, await device);
    }

    [Fact]
    public async Task Transmit_HeaderClaimsHugeResponse_FormatException()
    {
        using var pair = await SocketPair.CreateAsync();
        var device = Task.Run(async () =>
        {
            var buffer = new byte[64];
            await pair.Device.ReceiveAsync(buffer);
            await pair.Device.SendAsync(new byte[] { 0x80, 0x01, 0x00, 0x10, 0x00, 0x00, 0, 0, 0, 0 });
        });
        await using var client = new TpmClient(new TpmDeviceTransport(pair.OpenClientFileStream(), 8192));
        await Assert.ThrowsAsync<TpmFormatException>(() => client.GetRandomAsync(8, CancellationToken.None));
        await device;
        var broken = await Assert.ThrowsAsync<TpmException>(() => client.GetRandomAsync(8, CancellationToken.None));
        Assert.Contains("broken", broken.Message);
    }

    [Fact]
    public async Task Transmit_DeviceClosesMidResponse_TpmException()
    {
        using var pair = await SocketPair.CreateAsync();
        var device = Task.Run(async () =>
        {
            var buffer = new byte[64];
            await pair.Device.ReceiveAsync(buffer);
            await pair.Device.SendAsync(new byte[] { 0x80, 0x01, 0, 0, 0, 20, 0, 0 });
            pair.Device.Shutdown(SocketShutdown.Both);
        });
        await using var client = new TpmClient(new TpmDeviceTransport(pair.OpenClientFileStream(), 8192));
        await Assert.ThrowsAnyAsync<TpmException>(() => client.GetRandomAsync(8, CancellationToken.None));
        await device;
    }

    [Fact]
    public void Open_MissingDevice_TpmExceptionNamingPath()
    {
        var e = Assert.Throws<TpmException>(() => TpmClient.OpenDevice("/nonexistent/tpmrm0"));
        Assert.Contains("/nonexistent/tpmrm0", e.Message);
    }

    private sealed record ScriptResult(byte[] PublicArea, byte[] Attest, byte[] Signature, SortedDictionary<int, byte[]> Pcrs);

    private static async Task<ScriptResult> RunScriptAsync(TpmClient client)
    {
        var created = await client.CreatePrimaryAsync(TpmHierarchy.Endorsement, TpmAttestationKey.Template(), default, CancellationToken.None);
        await client.PcrExtendAsync(15, SHA256.HashData("a"u8), CancellationToken.None);
        await client.PcrEventAsync(16, "event"u8.ToArray(), CancellationToken.None);
        var pcrs = await client.PcrReadAsync([0, 1, 2, 3, 4, 5, 6, 7, 8, 15, 16], CancellationToken.None);
        var quote = await client.QuoteAsync(created.Handle, default, Nonce, TpmPcrSelection.Sha256([0, 15]), CancellationToken.None);
        await client.FlushContextAsync(created.Handle, CancellationToken.None);
        return new ScriptResult(created.PublicArea, quote.Attest, quote.Signature, pcrs);
    }

    /// <summary>Reads each command, checks it equals the recorded one, answers in two writes (to exercise short reads).</summary>
    private static async Task<int> ReplayAsync(Socket device, List<(byte[] Command, byte[] Response)> recorded)
    {
        var served = 0;
        foreach (var (command, response) in recorded)
        {
            var header = new byte[10];
            await ReceiveExactlyAsync(device, header);
            var size = (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(2));
            var body = new byte[size - 10];
            await ReceiveExactlyAsync(device, body);
            Assert.Equal(command, header.Concat(body).ToArray());
            var half = response.Length / 2;
            await device.SendAsync(response.AsMemory(0, half));
            // The split is the thing under test (a response in two reads), not a wait for something to happen.
            await Task.Delay(1);
            await device.SendAsync(response.AsMemory(half));
            served++;
        }
        return served;
    }

    private static async Task ReceiveExactlyAsync(Socket socket, byte[] buffer)
    {
        var got = 0;
        while (got < buffer.Length)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(got));
            Assert.True(n > 0, "client closed early");
            got += n;
        }
    }

    /// <summary>A connected pair of Unix stream sockets in a temporary directory.</summary>
    private sealed class SocketPair : IDisposable
    {
        private readonly string _directory;
        private readonly Socket _client;

        private SocketPair(string directory, Socket client, Socket device)
        {
            _directory = directory;
            _client = client;
            Device = device;
        }

        public Socket Device { get; }

        public static async Task<SocketPair> CreateAsync()
        {
            var dir = Directory.CreateTempSubdirectory("asterism-tpmdev-").FullName;
            var endpoint = new UnixDomainSocketEndPoint(Path.Combine(dir, "tpm.sock"));
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(endpoint);
            listener.Listen(1);
            // Synchronous, blocking connect: the descriptor stays blocking like a character device's.
            var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { Blocking = true };
            var accept = listener.AcceptAsync();
            client.Connect(endpoint);
            return new SocketPair(dir, client, await accept);
        }

        /// <summary>A FileStream over the client socket's descriptor, as the transport would hold over /dev/tpmrm0.</summary>
        public FileStream OpenClientFileStream() =>
            new(new SafeFileHandle(_client.Handle, ownsHandle: false), FileAccess.ReadWrite, bufferSize: 0);

        public void Dispose()
        {
            _client.Dispose();
            Device.Dispose();
            Directory.Delete(_directory, recursive: true);
        }
    }
}
