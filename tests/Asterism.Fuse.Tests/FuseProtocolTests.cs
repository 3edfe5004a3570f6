using System.Buffers.Binary;
using System.IO.Pipes;
using Asterism.Disk;

namespace Asterism.Fuse.Tests;

/// <summary>Requests a hostile or buggy peer could send, fed to the session with its replies captured on a pipe.</summary>
public sealed class FuseProtocolTests : IDisposable
{
    private readonly AnonymousPipeServerStream _replies = new(PipeDirection.In);
    private readonly FuseSession _session;
    private readonly byte[] _replyBuffer = new byte[1024 * 1024 + 8192];

    public FuseProtocolTests()
    {
        // The session writes replies to the pipe's write end as it would to /dev/fuse (and owns that descriptor).
        var fd = (int)_replies.ClientSafePipeHandle.DangerousGetHandle();
        _session = new FuseSession(Dup(fd), new BlockDeviceFileSystem(new MemoryBlockDevice(64 * 1024)));
        _replies.DisposeLocalCopyOfClientHandle();
    }

    public void Dispose()
    {
        _session.Dispose();
        _replies.Dispose();
    }

    private static byte[] Request(FuseOpcode opcode, ulong node, ReadOnlySpan<byte> body, ulong unique = 7)
    {
        var r = new byte[40 + body.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(r, (uint)r.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(r.AsSpan(4), (uint)opcode);
        BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(8), unique);
        BinaryPrimitives.WriteUInt64LittleEndian(r.AsSpan(16), node);
        body.CopyTo(r.AsSpan(40));
        return r;
    }

    private (int Errno, byte[] Body) Send(byte[] request)
    {
        Assert.True(_session.Handle(request, _replyBuffer));
        var header = new byte[16];
        _replies.ReadExactly(header);
        var length = BinaryPrimitives.ReadUInt32LittleEndian(header);
        Assert.Equal(7UL, BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(8)));
        var body = new byte[length - 16];
        _replies.ReadExactly(body);
        return (-BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(4)), body);
    }

    private void Init(uint minor = 38)
    {
        var body = new byte[64];
        BinaryPrimitives.WriteUInt32LittleEndian(body, 7);
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(4), minor);
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(8), 128 * 1024);
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(12), uint.MaxValue);
        var (errno, reply) = Send(Request(FuseOpcode.Init, 0, body));
        Assert.Equal(0, errno);
        Assert.Equal(64, reply.Length);
    }

    [Fact]
    public void Init_Negotiates_MaxWriteAndOnlyFlagsWeUse()
    {
        Init();
        Assert.True(_session.IsInitialized);
    }

    [Fact]
    public void Init_OldProtocol_IsRefused()
    {
        var body = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(body, 7);
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(4), 12);
        Assert.True(_session.Handle(Request(FuseOpcode.Init, 0, body), _replyBuffer));
        Assert.False(_session.IsInitialized);
        Assert.Contains("7.12", _session.Fault, StringComparison.Ordinal);
    }

    [Fact]
    public void Request_BeforeInit_IsEio()
    {
        Assert.Equal(5, Send(Request(FuseOpcode.GetAttr, 1, new byte[16])).Errno);
    }

    [Fact]
    public void Header_TruncatedOrLengthMismatch_EndsTheSession()
    {
        Assert.False(_session.Handle(new byte[39], _replyBuffer));
        Assert.Contains("shorter than the 40-byte header", _session.Fault, StringComparison.Ordinal);
        var lying = Request(FuseOpcode.GetAttr, 1, new byte[16]);
        BinaryPrimitives.WriteUInt32LittleEndian(lying, 4096);
        Assert.False(_session.Handle(lying, _replyBuffer));
    }

    [Theory]
    [InlineData(FuseOpcode.GetAttr, 15)]
    [InlineData(FuseOpcode.SetAttr, 87)]
    [InlineData(FuseOpcode.Open, 7)]
    [InlineData(FuseOpcode.Read, 39)]
    [InlineData(FuseOpcode.Write, 39)]
    [InlineData(FuseOpcode.Release, 23)]
    [InlineData(FuseOpcode.Flush, 23)]
    [InlineData(FuseOpcode.Fsync, 15)]
    [InlineData(FuseOpcode.Access, 7)]
    [InlineData(FuseOpcode.ReadDir, 0)]
    public void Body_ShorterThanItsStruct_IsEinval(FuseOpcode opcode, int size)
    {
        Init();
        Assert.Equal(22, Send(Request(opcode, BlockDeviceFileSystem.FileNode, new byte[size])).Errno);
    }

    [Fact]
    public void Write_SizeFieldDisagreesWithPayload_IsEinval()
    {
        Init();
        var body = new byte[40 + 100];
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(16), 4096);
        Assert.Equal(22, Send(Request(FuseOpcode.Write, BlockDeviceFileSystem.FileNode, body)).Errno);
    }

    [Fact]
    public void Read_LargerThanMaxWrite_IsEinval()
    {
        Init();
        var body = new byte[40];
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(16), 2 * 1024 * 1024);
        Assert.Equal(22, Send(Request(FuseOpcode.Read, BlockDeviceFileSystem.FileNode, body)).Errno);
    }

    [Fact]
    public void Lookup_NameWithoutNulOrTooLong_IsRefused()
    {
        Init();
        Assert.Equal(22, Send(Request(FuseOpcode.Lookup, 1, "disk"u8)).Errno);
        Assert.Equal(36, Send(Request(FuseOpcode.Lookup, 1, [.. new byte[300].Select(_ => (byte)'a'), 0])).Errno);
        Assert.Equal(2, Send(Request(FuseOpcode.Lookup, 1, "nope\0"u8)).Errno);
        Assert.Equal(0, Send(Request(FuseOpcode.Lookup, 1, "disk\0"u8)).Errno);
    }

    [Fact]
    public void SetAttr_ModeOrOwnerChange_IsEperm()
    {
        Init();
        var body = new byte[88];
        BinaryPrimitives.WriteUInt32LittleEndian(body, 1 | 2);
        Assert.Equal(1, Send(Request(FuseOpcode.SetAttr, BlockDeviceFileSystem.FileNode, body)).Errno);
    }

    [Theory]
    [InlineData(5u)] // READLINK
    [InlineData(9u)] // MKDIR
    [InlineData(10u)] // UNLINK
    [InlineData(35u)] // CREATE
    [InlineData(43u)] // FALLOCATE
    [InlineData(999u)]
    public void UnknownOrUnsupportedOpcode_IsEnosys(uint opcode)
    {
        Init();
        Assert.Equal(38, Send(Request((FuseOpcode)opcode, 1, new byte[64])).Errno);
    }

    [Fact]
    public void BatchForget_CountLargerThanBody_IsBoundedAndUnanswered()
    {
        Init();
        var body = new byte[8 + 16];
        BinaryPrimitives.WriteUInt32LittleEndian(body, uint.MaxValue);
        Assert.True(_session.Handle(Request(FuseOpcode.BatchForget, 0, body), _replyBuffer));
        Assert.True(_session.Handle(Request(FuseOpcode.Interrupt, 0, new byte[8]), _replyBuffer));
        // Neither got a reply: the next reply on the pipe is the GETATTR's.
        Assert.Equal(0, Send(Request(FuseOpcode.GetAttr, 1, new byte[16])).Errno);
    }

    [Fact]
    public void RandomBytes_NeverThrow()
    {
        Init();
        var rng = new Random(42);
        for (var i = 0; i < 2000; i++)
        {
            var body = new byte[rng.Next(0, 200)];
            rng.NextBytes(body);
            var opcode = (FuseOpcode)rng.Next(1, 50);
            if (opcode is FuseOpcode.Init or FuseOpcode.Destroy or FuseOpcode.Forget or FuseOpcode.BatchForget or FuseOpcode.Interrupt)
            {
                continue;
            }
            var (errno, _) = Send(Request(opcode, (ulong)rng.Next(0, 4), body));
            Assert.InRange(errno, 0, 200);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern int dup(int fd);

    private static int Dup(int fd) => dup(fd);
}
