using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Fuse;

/// <summary>Tuning of a <see cref="FuseSession"/>.</summary>
public sealed record FuseSessionOptions
{
    /// <summary>Threads reading requests from the connection; also the bound on requests served at once.</summary>
    public int Workers { get; init; } = 4;

    /// <summary>Largest WRITE (and READ) payload in bytes: 128 KiB to 1 MiB, a multiple of 4096.</summary>
    public int MaxWrite { get; init; } = 1024 * 1024;

    /// <summary>How long the kernel may cache names and attributes (the tree and sizes never change here).</summary>
    public TimeSpan AttributeTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Log of protocol faults and unmounts (no data, no key material).</summary>
    public ILogger Logger { get; init; } = NullLogger.Instance;

    internal void Validate()
    {
        if (Workers is < 1 or > 64)
        {
            throw new ArgumentOutOfRangeException(nameof(Workers), "1 to 64 workers.");
        }
        if (MaxWrite is < 128 * 1024 or > 1024 * 1024 || MaxWrite % 4096 != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxWrite), "128 KiB to 1 MiB, a multiple of 4096.");
        }
    }
}

/// <summary>
/// Serves the FUSE protocol on one connection (/dev/fuse descriptor) to an <see cref="IFuseFileSystem"/>: a fixed
/// number of worker threads each poll the descriptor, read one request, dispatch it and write the reply, so at most
/// <see cref="FuseSessionOptions.Workers"/> requests run at once. Ends when the kernel reports the file system
/// unmounted (ENODEV), on DESTROY, on <see cref="Stop"/>, or on a protocol fault.
/// </summary>
public sealed partial class FuseSession : IDisposable
{
    private const int PollIntervalMs = 200;

    private readonly int _fd;
    private readonly IFuseFileSystem _fileSystem;
    private readonly FuseSessionOptions _options;
    private readonly ILogger _logger;
    private readonly Thread[] _workers;
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _running;
    private volatile bool _stopping;
    private volatile bool _initialized;
    private int _closed;

    /// <summary>Takes ownership of an open /dev/fuse descriptor (closed on dispose).</summary>
    public FuseSession(int fuseFd, IFuseFileSystem fileSystem, FuseSessionOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(fileSystem);
        ArgumentOutOfRangeException.ThrowIfNegative(fuseFd);
        _options = options ?? new FuseSessionOptions();
        _options.Validate();
        _fd = fuseFd;
        _fileSystem = fileSystem;
        _logger = _options.Logger;
        // Non-blocking reads let idle workers notice Stop(): a thread blocked in read(2) cannot be woken otherwise.
        var flags = Native.fcntl(_fd, Native.F_GETFL, 0);
        if (flags < 0 || Native.fcntl(_fd, Native.F_SETFL, flags | Native.O_NONBLOCK) < 0)
        {
            throw new IOException($"Cannot make the FUSE descriptor non-blocking: {Native.Describe(Native.LastErrno)}");
        }
        _workers = new Thread[_options.Workers];
        for (var i = 0; i < _workers.Length; i++)
        {
            _workers[i] = new Thread(Work) { IsBackground = true, Name = $"fuse-{i}" };
        }
    }

    /// <summary>Whether the kernel's INIT was answered (the mount is usable).</summary>
    public bool IsInitialized => _initialized;

    /// <summary>The protocol fault that ended the session, if one did.</summary>
    public string? Fault { get; private set; }

    /// <summary>Completes when every worker has stopped.</summary>
    public Task Completion => _completion.Task;

    /// <summary>Starts the workers.</summary>
    public void Start()
    {
        if (Interlocked.Exchange(ref _running, _workers.Length) != 0)
        {
            throw new InvalidOperationException("The session was started already.");
        }
        foreach (var t in _workers)
        {
            t.Start();
        }
    }

    /// <summary>Asks the workers to stop after their current request (within the poll interval).</summary>
    public void Stop() => _stopping = true;

    /// <summary>Stops the workers, waits for them and closes the descriptor.</summary>
    public void Dispose()
    {
        Stop();
        foreach (var t in _workers)
        {
            if (t.IsAlive)
            {
                t.Join();
            }
        }
        if (Interlocked.Exchange(ref _closed, 1) == 0)
        {
            Native.close(_fd);
        }
        _completion.TrySetResult();
    }

    private unsafe void Work()
    {
        var bufferSize = _options.MaxWrite + 64 * 1024;
        var request = GC.AllocateArray<byte>(bufferSize, pinned: true);
        var reply = GC.AllocateArray<byte>(FuseLayout.OutHeaderSize + _options.MaxWrite + 4096, pinned: true);
        try
        {
            fixed (byte* requestPtr = request)
            {
                while (!_stopping)
                {
                    var pfd = new Native.PollFd { Fd = _fd, Events = Native.POLLIN };
                    var ready = Native.poll(&pfd, 1, PollIntervalMs);
                    if (ready == 0 || (ready < 0 && Native.LastErrno == Native.EINTR))
                    {
                        continue;
                    }
                    var n = Native.read(_fd, requestPtr, (nuint)request.Length);
                    if (n < 0)
                    {
                        var errno = Native.LastErrno;
                        if (errno is Native.EAGAIN or Native.EINTR or Native.ENOENT)
                        {
                            continue;
                        }
                        if (errno == Native.ENODEV)
                        {
                            Log.Unmounted(_logger);
                            break;
                        }
                        Fail($"read from /dev/fuse failed: {Native.Describe(errno)}");
                        break;
                    }
                    if (!Handle(request.AsSpan(0, (int)n), reply))
                    {
                        break;
                    }
                }
            }
        }
        finally
        {
            _stopping = true;
            if (Interlocked.Decrement(ref _running) == 0)
            {
                _completion.TrySetResult();
            }
        }
    }

    private void Fail(string fault)
    {
        Fault ??= fault;
        _stopping = true;
        Log.ProtocolFault(_logger, fault);
    }

    /// <summary>Handles one request; false ends the session.</summary>
    internal bool Handle(ReadOnlySpan<byte> received, byte[] reply)
    {
        if (!FuseInHeader.TryParse(received, out var header, out var error))
        {
            Fail(error!);
            return false;
        }
        var body = received[FuseLayout.InHeaderSize..];
        int errno;
        var length = 0;
        try
        {
            errno = Dispatch(header, body, reply.AsSpan(FuseLayout.OutHeaderSize), out length, out var noReply);
            if (noReply)
            {
                return true;
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Log.OperationFailed(_logger, header.Opcode.ToString(), e.GetType().Name);
            errno = Native.EIO;
        }
        if (errno != 0)
        {
            length = 0;
        }
        var total = FuseLayout.OutHeaderSize + length;
        FuseReply.OutHeader(reply, total, errno, header.Unique);
        return Send(reply.AsSpan(0, total));
    }

    private unsafe bool Send(ReadOnlySpan<byte> message)
    {
        fixed (byte* p = message)
        {
            var n = Native.write(_fd, p, (nuint)message.Length);
            if (n >= 0)
            {
                return true;
            }
            var errno = Native.LastErrno;
            // ENOENT: the request was interrupted or aborted meanwhile; its reply is simply not wanted any more.
            if (errno == Native.ENOENT)
            {
                return true;
            }
            if (errno == Native.ENODEV)
            {
                return false;
            }
            Fail($"write to /dev/fuse failed: {Native.Describe(errno)}");
            return false;
        }
    }

    private int Dispatch(in FuseInHeader h, ReadOnlySpan<byte> body, Span<byte> o, out int length, out bool noReply)
    {
        length = 0;
        noReply = false;
        if (!_initialized && h.Opcode != FuseOpcode.Init)
        {
            return Native.EIO;
        }
        var caller = new FuseCaller(h.Uid, h.Gid, h.Pid);
        switch (h.Opcode)
        {
            case FuseOpcode.Init:
                return Init(body, o, out length);
            case FuseOpcode.Lookup:
                {
                    if (!FuseBody.TryReadName(body, out var name))
                    {
                        return body.IndexOf((byte)0) > FuseLayout.NameMax ? Native.ENAMETOOLONG : Native.EINVAL;
                    }
                    var e = _fileSystem.Lookup(h.NodeId, name, out var a);
                    if (e == 0)
                    {
                        length = WriteEntry(o, a);
                    }
                    return e;
                }
            case FuseOpcode.GetAttr:
                {
                    if (body.Length < FuseLayout.GetAttrInSize)
                    {
                        return Native.EINVAL;
                    }
                    var e = _fileSystem.GetAttributes(h.NodeId, out var a);
                    if (e == 0)
                    {
                        length = WriteAttrOut(o, a);
                    }
                    return e;
                }
            case FuseOpcode.SetAttr:
                {
                    if (body.Length < FuseLayout.SetAttrInSize)
                    {
                        return Native.EINVAL;
                    }
                    var valid = FuseBody.U32(body, 0);
                    if ((valid & (FuseLayout.FattrMode | FuseLayout.FattrUid | FuseLayout.FattrGid)) != 0)
                    {
                        return Native.EPERM;
                    }
                    // Time stamps and the other bits are accepted and ignored: the tree is fixed, its times are the mount's.
                    var e = (valid & FuseLayout.FattrSize) != 0
                        ? _fileSystem.SetSize(h.NodeId, FuseBody.U64(body, 16), out var a)
                        : _fileSystem.GetAttributes(h.NodeId, out a);
                    if (e == 0)
                    {
                        length = WriteAttrOut(o, a);
                    }
                    return e;
                }
            case FuseOpcode.Open:
            case FuseOpcode.OpenDir:
                {
                    if (body.Length < FuseLayout.OpenInSize)
                    {
                        return Native.EINVAL;
                    }
                    ulong handle;
                    var flags = FuseOpenFlags.None;
                    var e = h.Opcode == FuseOpcode.Open
                        ? _fileSystem.Open(h.NodeId, (int)FuseBody.U32(body, 0), caller, out handle, out flags)
                        : _fileSystem.OpenDir(h.NodeId, caller, out handle);
                    if (e == 0)
                    {
                        o[..FuseLayout.OpenOutSize].Clear();
                        BinaryPrimitives.WriteUInt64LittleEndian(o, handle);
                        BinaryPrimitives.WriteUInt32LittleEndian(o[8..], (uint)flags);
                        length = FuseLayout.OpenOutSize;
                    }
                    return e;
                }
            case FuseOpcode.Read:
            case FuseOpcode.ReadDir:
                {
                    if (body.Length < FuseLayout.ReadInSize)
                    {
                        return Native.EINVAL;
                    }
                    var handle = FuseBody.U64(body, 0);
                    var offset = FuseBody.U64(body, 8);
                    var size = FuseBody.U32(body, 16);
                    if (size > _options.MaxWrite || offset > long.MaxValue)
                    {
                        return Native.EINVAL;
                    }
                    if (h.Opcode == FuseOpcode.ReadDir)
                    {
                        var writer = new FuseDirectoryWriter(o[..(int)size]);
                        var e = _fileSystem.ReadDir(h.NodeId, handle, offset, ref writer);
                        length = writer.Written;
                        return e;
                    }
                    else
                    {
                        var e = _fileSystem.Read(h.NodeId, handle, (long)offset, o[..(int)size], out var count);
                        length = e == 0 ? Math.Clamp(count, 0, (int)size) : 0;
                        return e;
                    }
                }
            case FuseOpcode.Write:
                {
                    if (body.Length < FuseLayout.WriteInSize)
                    {
                        return Native.EINVAL;
                    }
                    var handle = FuseBody.U64(body, 0);
                    var offset = FuseBody.U64(body, 8);
                    var size = FuseBody.U32(body, 16);
                    if (size > _options.MaxWrite || size != body.Length - FuseLayout.WriteInSize || offset > long.MaxValue)
                    {
                        return Native.EINVAL;
                    }
                    var e = _fileSystem.Write(h.NodeId, handle, (long)offset, body.Slice(FuseLayout.WriteInSize, (int)size), out var count);
                    if (e == 0)
                    {
                        o[..FuseLayout.WriteOutSize].Clear();
                        BinaryPrimitives.WriteUInt32LittleEndian(o, (uint)count);
                        length = FuseLayout.WriteOutSize;
                    }
                    return e;
                }
            case FuseOpcode.StatFs:
                {
                    var e = _fileSystem.StatFs(out var s);
                    if (e == 0)
                    {
                        length = WriteStatFs(o, s);
                    }
                    return e;
                }
            case FuseOpcode.Release:
            case FuseOpcode.ReleaseDir:
                if (body.Length < FuseLayout.ReleaseInSize)
                {
                    return Native.EINVAL;
                }
                return h.Opcode == FuseOpcode.Release
                    ? _fileSystem.Release(h.NodeId, FuseBody.U64(body, 0))
                    : _fileSystem.ReleaseDir(h.NodeId, FuseBody.U64(body, 0));
            case FuseOpcode.Flush:
                return body.Length < FuseLayout.FlushInSize ? Native.EINVAL : _fileSystem.Flush(h.NodeId, FuseBody.U64(body, 0));
            case FuseOpcode.Fsync:
                return body.Length < FuseLayout.FsyncInSize
                    ? Native.EINVAL
                    : _fileSystem.Fsync(h.NodeId, FuseBody.U64(body, 0), (FuseBody.U32(body, 8) & FuseLayout.FsyncDataOnly) != 0);
            case FuseOpcode.Access:
                return body.Length < FuseLayout.AccessInSize ? Native.EINVAL : _fileSystem.Access(h.NodeId, (int)FuseBody.U32(body, 0), caller);
            case FuseOpcode.Forget:
                noReply = true;
                if (body.Length >= FuseLayout.ForgetInSize)
                {
                    _fileSystem.Forget(h.NodeId, FuseBody.U64(body, 0));
                }
                return 0;
            case FuseOpcode.BatchForget:
                {
                    noReply = true;
                    if (body.Length < FuseLayout.BatchForgetInSize)
                    {
                        return 0;
                    }
                    var count = FuseBody.U32(body, 0);
                    // The count is bounded by the bytes actually received, never trusted alone.
                    var fits = (uint)((body.Length - FuseLayout.BatchForgetInSize) / FuseLayout.ForgetOneSize);
                    for (var i = 0; i < Math.Min(count, fits); i++)
                    {
                        var at = FuseLayout.BatchForgetInSize + (i * FuseLayout.ForgetOneSize);
                        _fileSystem.Forget(FuseBody.U64(body, at), FuseBody.U64(body, at + 8));
                    }
                    return 0;
                }
            case FuseOpcode.Interrupt:
                // Every operation here is short and not cancellable; the interrupted request simply completes.
                noReply = true;
                return 0;
            case FuseOpcode.Destroy:
                _stopping = true;
                return 0;
            default:
                return Native.ENOSYS;
        }
    }

    private int Init(ReadOnlySpan<byte> body, Span<byte> o, out int length)
    {
        length = 0;
        if (body.Length < FuseLayout.InitInMinimumSize)
        {
            Fail($"INIT body of {body.Length} bytes");
            return Native.EPROTO;
        }
        var major = FuseBody.U32(body, 0);
        var minor = FuseBody.U32(body, 4);
        var maxReadahead = FuseBody.U32(body, 8);
        var kernelFlags = FuseBody.U32(body, 12);
        if (major != FuseLayout.KernelMajor || minor < FuseLayout.MinimumMinor)
        {
            Fail($"unsupported FUSE protocol {major}.{minor} (need 7.{FuseLayout.MinimumMinor} or later)");
            return Native.EPROTO;
        }
        var flags = kernelFlags & (FuseLayout.InitAsyncRead | FuseLayout.InitBigWrites | FuseLayout.InitMaxPages);
        o[..FuseLayout.InitOutSize].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(o, FuseLayout.KernelMajor);
        BinaryPrimitives.WriteUInt32LittleEndian(o[4..], Math.Min(minor, FuseLayout.KernelMinor));
        BinaryPrimitives.WriteUInt32LittleEndian(o[8..], Math.Min(maxReadahead, (uint)_options.MaxWrite));
        BinaryPrimitives.WriteUInt32LittleEndian(o[12..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(o[16..], 16);
        BinaryPrimitives.WriteUInt16LittleEndian(o[18..], 12);
        BinaryPrimitives.WriteUInt32LittleEndian(o[20..], (uint)_options.MaxWrite);
        BinaryPrimitives.WriteUInt32LittleEndian(o[24..], 1);
        BinaryPrimitives.WriteUInt16LittleEndian(o[28..], (ushort)(_options.MaxWrite / 4096));
        length = FuseLayout.InitOutSize;
        _initialized = true;
        Log.Initialized(_logger, major, minor, _options.MaxWrite, _options.Workers);
        return 0;
    }

    private int WriteEntry(Span<byte> o, in FuseAttributes a)
    {
        var (seconds, nanos) = Split(_options.AttributeTimeout);
        o[..FuseLayout.EntryOutSize].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(o, a.Inode);
        BinaryPrimitives.WriteUInt64LittleEndian(o[16..], seconds);
        BinaryPrimitives.WriteUInt64LittleEndian(o[24..], seconds);
        BinaryPrimitives.WriteUInt32LittleEndian(o[32..], nanos);
        BinaryPrimitives.WriteUInt32LittleEndian(o[36..], nanos);
        FuseReply.Attr(o[40..], a);
        return FuseLayout.EntryOutSize;
    }

    private int WriteAttrOut(Span<byte> o, in FuseAttributes a)
    {
        var (seconds, nanos) = Split(_options.AttributeTimeout);
        o[..FuseLayout.AttrOutSize].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(o, seconds);
        BinaryPrimitives.WriteUInt32LittleEndian(o[8..], nanos);
        FuseReply.Attr(o[16..], a);
        return FuseLayout.AttrOutSize;
    }

    private static int WriteStatFs(Span<byte> o, in FuseStatFs s)
    {
        o[..FuseLayout.StatFsOutSize].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(o, s.Blocks);
        BinaryPrimitives.WriteUInt64LittleEndian(o[8..], s.FreeBlocks);
        BinaryPrimitives.WriteUInt64LittleEndian(o[16..], s.FreeBlocks);
        BinaryPrimitives.WriteUInt64LittleEndian(o[24..], s.Files);
        BinaryPrimitives.WriteUInt32LittleEndian(o[40..], s.BlockSize);
        BinaryPrimitives.WriteUInt32LittleEndian(o[44..], FuseLayout.NameMax);
        BinaryPrimitives.WriteUInt32LittleEndian(o[48..], s.BlockSize);
        return FuseLayout.StatFsOutSize;
    }

    private static (ulong Seconds, uint Nanos) Split(TimeSpan t) =>
        ((ulong)(t.Ticks / TimeSpan.TicksPerSecond), (uint)(t.Ticks % TimeSpan.TicksPerSecond * 100));

    private static partial class Log
    {
        [LoggerMessage(9100, LogLevel.Information, "FUSE connection initialized kernel={Major}.{Minor} maxWrite={MaxWrite} workers={Workers}")]
        public static partial void Initialized(ILogger logger, uint major, uint minor, int maxWrite, int workers);

        [LoggerMessage(9101, LogLevel.Information, "FUSE connection ended (unmounted)")]
        public static partial void Unmounted(ILogger logger);

        [LoggerMessage(9102, LogLevel.Error, "FUSE protocol fault: {Fault}")]
        public static partial void ProtocolFault(ILogger logger, string fault);

        [LoggerMessage(9103, LogLevel.Warning, "FUSE operation failed opcode={Opcode} error={Error}")]
        public static partial void OperationFailed(ILogger logger, string opcode, string error);
    }
}
