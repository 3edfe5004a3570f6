using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Asterism.Tpm;

/// <summary>
/// A TPM 2.0 command client over one <see cref="ITpmTransport"/>: marshals commands, serialises them, resends on
/// retryable warnings and parses responses within size limits. Authorisation uses password sessions (TPM_RS_PW).
/// Throws <see cref="TpmException"/> (and its <see cref="TpmFormatException"/>) only.
/// </summary>
public sealed class TpmClient : IAsyncDisposable
{
    private readonly ITpmTransport _transport;
    private readonly TpmClientOptions _options;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private bool _disposed;

    public TpmClient(ITpmTransport transport, TpmClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(transport);
        _transport = transport;
        _options = options ?? new TpmClientOptions();
    }

    /// <summary>Connects to swtpm's command socket (a Unix socket path).</summary>
    public static async Task<TpmClient> ConnectSwtpmAsync(string socketPath, TpmClientOptions? options, CancellationToken cancellationToken)
    {
        options ??= new TpmClientOptions();
        var transport = await SwtpmSocketTransport.ConnectAsync(socketPath, options.MaxResponseSize, cancellationToken).ConfigureAwait(false);
        return new TpmClient(transport, options);
    }

    /// <summary>Opens a TPM character device, <c>/dev/tpmrm0</c> by default.</summary>
    public static TpmClient OpenDevice(string path = TpmDeviceTransport.DefaultPath, TpmClientOptions? options = null)
    {
        options ??= new TpmClientOptions();
        return new TpmClient(TpmDeviceTransport.Open(path, options.MaxResponseSize), options);
    }

    /// <summary>
    /// Opens the TPM named by a <c>--tpm</c> argument: <c>unix:/abs/tpm.sock</c> for swtpm's command socket, or the
    /// absolute path of a TPM character device under /dev (<c>/dev/tpmrm0</c>, the kernel's resource manager). TCP
    /// endpoints are refused: anyone on the host could reach them. A device must be an entry of /dev itself once
    /// symlinks are resolved (only root creates those): /dev/shm and /dev/mqueue are writable by everyone, so a path
    /// under them could be another user's file or FIFO that reads the commands, hierarchy auth included.
    /// </summary>
    public static async Task<TpmClient> ConnectEndpointAsync(string? endpoint, TpmClientOptions? options, CancellationToken cancellationToken)
    {
        if (IsDeviceEndpoint(endpoint))
        {
            var target = endpoint.Contains('\0') ? null : ResolveDevice(endpoint);
            if (endpoint.Contains("..", StringComparison.Ordinal) || target is null || Path.GetDirectoryName(target) != "/dev")
            {
                throw new ArgumentException($"--tpm {endpoint}: not a TPM device path");
            }
            return OpenDevice(target, options);
        }
        return await ConnectSwtpmAsync(SwtpmSocketTransport.ParseSocketArgument(endpoint), options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>True when <paramref name="endpoint"/> names a TPM character device (a path under /dev), not a swtpm socket.</summary>
    public static bool IsDeviceEndpoint([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] string? endpoint) =>
        endpoint is not null && endpoint.StartsWith("/dev/", StringComparison.Ordinal);

    private static string? ResolveDevice(string path)
    {
        try
        {
            return File.ResolveLinkTarget(path, returnFinalTarget: true)?.FullName ?? path;
        }
        catch (FileNotFoundException)
        {
            // Nothing there: opening it says "cannot open TPM device … No such file", the clearer answer.
            return path;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>TPM2_Startup. Returns false when the TPM was already started (TPM_RC_INITIALIZE).</summary>
    public async Task<bool> StartupAsync(TpmStartupType type, CancellationToken cancellationToken)
    {
        var p = new TpmWriter().WriteUInt16((ushort)type);
        var (rc, _) = await TryExecuteAsync(TpmCommandCode.Startup, [], null, p, 0, cancellationToken).ConfigureAwait(false);
        if (rc.Value == TpmResponseCode.Initialize)
        {
            return false;
        }
        ThrowIfError(TpmCommandCode.Startup, rc);
        return true;
    }

    /// <summary>TPM2_Shutdown: an orderly shutdown, so the next start does not count as a lockout-relevant failure.</summary>
    public async Task ShutdownAsync(TpmStartupType type, CancellationToken cancellationToken)
    {
        var p = new TpmWriter().WriteUInt16((ushort)type);
        await ExecuteAsync(TpmCommandCode.Shutdown, [], null, p, 0, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// TPM2_CreatePrimary under <paramref name="hierarchy"/> from a TPMT_PUBLIC template with an empty user auth.
    /// The same template in the same hierarchy yields the same key until the hierarchy seed changes.
    /// </summary>
    public async Task<TpmCreatePrimaryResult> CreatePrimaryAsync(
        TpmHierarchy hierarchy, ReadOnlyMemory<byte> publicTemplate, ReadOnlyMemory<byte> hierarchyAuth, CancellationToken cancellationToken)
    {
        var p = new TpmWriter(160)
            .WriteUInt16(4).WriteUInt16(0).WriteUInt16(0) // TPM2B_SENSITIVE_CREATE: empty userAuth, empty data
            .WriteSized(publicTemplate.Span)
            .WriteUInt16(0) // outsideInfo
            .WriteUInt32(0); // creationPCR: none
        var (handles, parameters) = await ExecuteAsync(TpmCommandCode.CreatePrimary, [(uint)hierarchy], [hierarchyAuth], p, 1, cancellationToken).ConfigureAwait(false);
        return ParseCreatePrimary(handles[0], parameters);
    }

    /// <summary>TPM2_ReadPublic.</summary>
    public async Task<TpmReadPublicResult> ReadPublicAsync(uint handle, CancellationToken cancellationToken)
    {
        var (_, parameters) = await ExecuteAsync(TpmCommandCode.ReadPublic, [handle], null, new TpmWriter(0), 0, cancellationToken).ConfigureAwait(false);
        var r = new TpmReader(parameters);
        var pub = ReadPublicArea(ref r);
        var name = r.ReadSized(TpmConst.MaxName, "name").ToArray();
        var qualified = r.ReadSized(TpmConst.MaxName, "qualifiedName").ToArray();
        r.ExpectEnd("ReadPublic response");
        return new TpmReadPublicResult(pub, name, qualified);
    }

    /// <summary>TPM2_Quote with the ECDSA/SHA-256 scheme over <paramref name="selection"/>.</summary>
    public async Task<TpmQuoteResult> QuoteAsync(
        uint signHandle, ReadOnlyMemory<byte> keyAuth, ReadOnlyMemory<byte> qualifyingData, TpmPcrSelection selection, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(selection);
        if (qualifyingData.Length > TpmConst.MaxDigest)
        {
            throw new ArgumentException($"qualifying data is at most {TpmConst.MaxDigest} bytes", nameof(qualifyingData));
        }
        var p = new TpmWriter()
            .WriteSized(qualifyingData.Span)
            .WriteUInt16(TpmAlg.Ecdsa).WriteUInt16(TpmAlg.Sha256);
        selection.WriteList(p);
        var (_, parameters) = await ExecuteAsync(TpmCommandCode.Quote, [signHandle], [keyAuth], p, 0, cancellationToken).ConfigureAwait(false);
        var r = new TpmReader(parameters);
        var attest = r.ReadSized(TpmQuoteAttestation.MaxAttestSize, "TPM2B_ATTEST").ToArray();
        var start = r.Position;
        TpmEcdsaSignature.Read(ref r);
        var signature = parameters.AsSpan(start, r.Position - start).ToArray();
        r.ExpectEnd("Quote response");
        return new TpmQuoteResult(attest, signature);
    }

    /// <summary>TPM2_PCR_Extend of the SHA-256 bank: PCR = SHA-256(PCR ‖ digest).</summary>
    public async Task PcrExtendAsync(int pcr, ReadOnlyMemory<byte> sha256Digest, CancellationToken cancellationToken)
    {
        CheckPcr(pcr);
        if (sha256Digest.Length != 32)
        {
            throw new ArgumentException("a SHA-256 digest is 32 bytes", nameof(sha256Digest));
        }
        var p = new TpmWriter().WriteUInt32(1).WriteUInt16(TpmAlg.Sha256).WriteBytes(sha256Digest.Span);
        var (_, parameters) = await ExecuteAsync(TpmCommandCode.PcrExtend, [(uint)pcr], [ReadOnlyMemory<byte>.Empty], p, 0, cancellationToken).ConfigureAwait(false);
        new TpmReader(parameters).ExpectEnd("PCR_Extend response");
    }

    /// <summary>
    /// TPM2_PCR_Event: every active bank is extended with the hash of <paramref name="eventData"/> (at most 1024
    /// bytes). Returns the SHA-256 digest of the event the TPM reports.
    /// </summary>
    public async Task<byte[]> PcrEventAsync(int pcr, ReadOnlyMemory<byte> eventData, CancellationToken cancellationToken)
    {
        CheckPcr(pcr);
        if (eventData.Length > TpmConst.MaxEventData)
        {
            throw new ArgumentException($"event data is at most {TpmConst.MaxEventData} bytes", nameof(eventData));
        }
        var p = new TpmWriter().WriteSized(eventData.Span);
        var (_, parameters) = await ExecuteAsync(TpmCommandCode.PcrEvent, [(uint)pcr], [ReadOnlyMemory<byte>.Empty], p, 0, cancellationToken).ConfigureAwait(false);
        return ParsePcrEvent(parameters);
    }

    /// <summary>
    /// TPM2_PCR_Read of the SHA-256 bank. A TPM returns at most 8 digests per call, so this loops until every
    /// requested PCR has been read. The result is keyed by PCR index.
    /// </summary>
    public async Task<SortedDictionary<int, byte[]>> PcrReadAsync(IEnumerable<int> pcrs, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(pcrs);
        var remaining = new SortedSet<int>(pcrs);
        foreach (var i in remaining)
        {
            CheckPcr(i);
        }
        var result = new SortedDictionary<int, byte[]>();
        while (remaining.Count > 0)
        {
            var p = new TpmWriter();
            TpmPcrSelection.Sha256(remaining).WriteList(p);
            var (_, parameters) = await ExecuteAsync(TpmCommandCode.PcrRead, [], null, p, 0, cancellationToken).ConfigureAwait(false);
            var got = ParsePcrRead(parameters);
            if (got.Count == 0)
            {
                throw new TpmException($"the TPM's SHA-256 bank does not hold PCR(s) {string.Join(',', remaining)}");
            }
            foreach (var (index, value) in got)
            {
                if (!remaining.Remove(index))
                {
                    throw new TpmFormatException($"PCR_Read returned PCR {index}, which was not requested");
                }
                result[index] = value;
            }
        }
        return result;
    }

    /// <summary>
    /// TPM2_HierarchyChangeAuth: replaces the authorisation value of <paramref name="hierarchy"/>, authorised with its
    /// current value. Owner, endorsement and lockout values persist; the platform value lasts until the next Startup.
    /// </summary>
    public async Task HierarchyChangeAuthAsync(
        TpmHierarchy hierarchy, ReadOnlyMemory<byte> currentAuth, ReadOnlyMemory<byte> newAuth, CancellationToken cancellationToken)
    {
        if (newAuth.Length > TpmConst.MaxDigest)
        {
            throw new ArgumentException($"an authorisation value is at most {TpmConst.MaxDigest} bytes", nameof(newAuth));
        }
        var p = new TpmWriter().WriteSized(newAuth.Span);
        try
        {
            var (_, parameters) = await ExecuteAsync(TpmCommandCode.HierarchyChangeAuth, [(uint)hierarchy], [currentAuth], p, 0, cancellationToken).ConfigureAwait(false);
            new TpmReader(parameters).ExpectEnd("HierarchyChangeAuth response");
        }
        finally
        {
            p.Clear();
        }
    }

    /// <summary>TPM2_NV_ReadPublic: size and attributes of an NV index (e.g. an EK certificate index).</summary>
    public async Task<TpmNvPublic> NvReadPublicAsync(uint nvIndex, CancellationToken cancellationToken)
    {
        var (_, parameters) = await ExecuteAsync(TpmCommandCode.NvReadPublic, [nvIndex], null, new TpmWriter(0), 0, cancellationToken).ConfigureAwait(false);
        var r = new TpmReader(parameters);
        var size = r.ReadUInt16();
        var start = r.Position;
        var index = r.ReadUInt32();
        var nameAlg = r.ReadUInt16();
        var attributes = r.ReadUInt32();
        r.ReadSized(TpmConst.MaxDigest, "NV authPolicy");
        var dataSize = r.ReadUInt16();
        if (r.Position - start != size)
        {
            throw new TpmFormatException($"TPM2B_NV_PUBLIC says {size} bytes, its fields take {r.Position - start}");
        }
        var name = r.ReadSized(TpmConst.MaxName, "NV name").ToArray();
        r.ExpectEnd("NV_ReadPublic response");
        if (index != nvIndex)
        {
            throw new TpmFormatException($"NV_ReadPublic answered for index 0x{index:X8}, not 0x{nvIndex:X8}");
        }
        return new TpmNvPublic(index, nameAlg, attributes, dataSize, name);
    }

    /// <summary>
    /// TPM2_NV_Read of the whole index, authorised by the index itself with <paramref name="indexAuth"/> (AUTHREAD;
    /// EK certificate indices have an empty one). Reads in chunks below every TPM's NV buffer limit.
    /// </summary>
    public async Task<byte[]> NvReadAsync(uint nvIndex, ReadOnlyMemory<byte> indexAuth, CancellationToken cancellationToken)
    {
        var info = await NvReadPublicAsync(nvIndex, cancellationToken).ConfigureAwait(false);
        if (info.DataSize > TpmConst.MaxNvIndexSize)
        {
            throw new TpmFormatException($"NV index 0x{nvIndex:X8} holds {info.DataSize} bytes, at most {TpmConst.MaxNvIndexSize} are read");
        }
        var result = new byte[info.DataSize];
        for (var offset = 0; offset < result.Length;)
        {
            var want = (ushort)Math.Min(TpmConst.MaxNvBufferChunk, result.Length - offset);
            var p = new TpmWriter().WriteUInt16(want).WriteUInt16((ushort)offset);
            var (_, parameters) = await ExecuteAsync(TpmCommandCode.NvRead, [nvIndex, nvIndex], [indexAuth], p, 0, cancellationToken).ConfigureAwait(false);
            var r = new TpmReader(parameters);
            var data = r.ReadSized(want, "NV data");
            r.ExpectEnd("NV_Read response");
            if (data.Length != want)
            {
                throw new TpmFormatException($"NV_Read returned {data.Length} bytes, {want} were asked for");
            }
            data.CopyTo(result.AsSpan(offset));
            offset += want;
        }
        return result;
    }

    /// <summary>
    /// TPM2_NV_DefineSpace of an ordinary index with an empty auth value and no policy, authorised by
    /// <paramref name="hierarchy"/> (the platform for an EK certificate index, which the platform then writes).
    /// </summary>
    public async Task NvDefineSpaceAsync(
        TpmHierarchy hierarchy, ReadOnlyMemory<byte> hierarchyAuth, uint nvIndex, uint attributes, ushort dataSize, CancellationToken cancellationToken)
    {
        var nvPublic = new TpmWriter(16).WriteUInt32(nvIndex).WriteUInt16(TpmAlg.Sha256).WriteUInt32(attributes).WriteUInt16(0).WriteUInt16(dataSize).ToArray();
        var p = new TpmWriter(32).WriteUInt16(0).WriteSized(nvPublic);
        var (_, parameters) = await ExecuteAsync(TpmCommandCode.NvDefineSpace, [(uint)hierarchy], [hierarchyAuth], p, 0, cancellationToken).ConfigureAwait(false);
        new TpmReader(parameters).ExpectEnd("NV_DefineSpace response");
    }

    /// <summary>TPM2_NV_Write of <paramref name="data"/> from offset 0, in chunks, authorised by <paramref name="authHandle"/> (e.g. the platform for PPWRITE).</summary>
    public async Task NvWriteAsync(uint authHandle, ReadOnlyMemory<byte> auth, uint nvIndex, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        for (var offset = 0; offset < data.Length;)
        {
            var n = Math.Min(TpmConst.MaxNvBufferChunk, data.Length - offset);
            var p = new TpmWriter(n + 4).WriteSized(data.Span.Slice(offset, n)).WriteUInt16((ushort)offset);
            var (_, parameters) = await ExecuteAsync(TpmCommandCode.NvWrite, [authHandle, nvIndex], [auth], p, 0, cancellationToken).ConfigureAwait(false);
            new TpmReader(parameters).ExpectEnd("NV_Write response");
            offset += n;
        }
    }

    /// <summary>
    /// TPM2_StartAuthSession of an unbound, unsalted SHA-256 policy session with no parameter encryption. Such a
    /// session carries no HMAC key, so it authorises only through its policy (e.g. PolicySecret). Flush it when done.
    /// </summary>
    public async Task<uint> StartPolicySessionAsync(CancellationToken cancellationToken)
    {
        var nonceCaller = RandomNumberGenerator.GetBytes(32);
        var p = new TpmWriter()
            .WriteSized(nonceCaller)
            .WriteUInt16(0) // encryptedSalt: none
            .WriteByte(TpmConst.SessionTypePolicy)
            .WriteUInt16(TpmAlg.Null) // symmetric: none
            .WriteUInt16(TpmAlg.Sha256);
        var (handles, parameters) = await ExecuteAsync(TpmCommandCode.StartAuthSession, [(uint)TpmHierarchy.Null, (uint)TpmHierarchy.Null], null, p, 1, cancellationToken).ConfigureAwait(false);
        var r = new TpmReader(parameters);
        r.ReadSized(TpmConst.MaxDigest, "nonceTPM");
        r.ExpectEnd("StartAuthSession response");
        return handles[0];
    }

    /// <summary>
    /// TPM2_PolicySecret: proves knowledge of <paramref name="authHandle"/>'s authorisation value (sent in a password
    /// session) and extends the policy session with it — what the standard EK policy asks for (TPM_RH_ENDORSEMENT).
    /// </summary>
    public async Task PolicySecretAsync(uint authHandle, ReadOnlyMemory<byte> auth, uint policySession, CancellationToken cancellationToken)
    {
        var p = new TpmWriter()
            .WriteUInt16(0) // nonceTPM: none (no expiration)
            .WriteUInt16(0) // cpHashA
            .WriteUInt16(0) // policyRef
            .WriteUInt32(0); // expiration
        var (_, parameters) = await ExecuteAsync(TpmCommandCode.PolicySecret, [authHandle, policySession], [auth], p, 0, cancellationToken).ConfigureAwait(false);
        var r = new TpmReader(parameters);
        r.ReadSized(TpmConst.MaxDigest, "timeout");
        r.ReadUInt16(); // policyTicket.tag
        r.ReadUInt32(); // policyTicket.hierarchy
        r.ReadSized(TpmConst.MaxDigest, "policyTicket.digest");
        r.ExpectEnd("PolicySecret response");
    }

    /// <summary>
    /// TPM2_ActivateCredential: the TPM decrypts <paramref name="encryptedSecret"/> with <paramref name="keyHandle"/>
    /// (the EK, authorised by <paramref name="keyPolicySession"/>), checks the credential's HMAC against the name of
    /// <paramref name="activateHandle"/> (the AK, ADMIN role with a password) and returns the secret. It succeeds only
    /// when both keys are loaded in this TPM. The policy session is consumed.
    /// </summary>
    public async Task<byte[]> ActivateCredentialAsync(
        uint activateHandle, ReadOnlyMemory<byte> activateAuth, uint keyHandle, uint keyPolicySession,
        ReadOnlyMemory<byte> credentialBlob, ReadOnlyMemory<byte> encryptedSecret, CancellationToken cancellationToken)
    {
        var p = new TpmWriter(credentialBlob.Length + encryptedSecret.Length + 8)
            .WriteSized(credentialBlob.Span)
            .WriteSized(encryptedSecret.Span);
        var (_, parameters) = await ExecuteAsync(
            TpmCommandCode.ActivateCredential, [activateHandle, keyHandle], [activateAuth, ReadOnlyMemory<byte>.Empty], p, 0, cancellationToken,
            [TpmConst.PasswordSession, keyPolicySession]).ConfigureAwait(false);
        var r = new TpmReader(parameters);
        var certInfo = r.ReadSized(TpmConst.MaxDigest, "certInfo").ToArray();
        r.ExpectEnd("ActivateCredential response");
        CryptographicOperations.ZeroMemory(parameters);
        return certInfo;
    }

    /// <summary>TPM2_FlushContext: frees a transient object or session slot.</summary>
    public async Task FlushContextAsync(uint handle, CancellationToken cancellationToken)
    {
        var p = new TpmWriter().WriteUInt32(handle);
        await ExecuteAsync(TpmCommandCode.FlushContext, [], null, p, 0, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>TPM2_GetRandom, looping because a TPM returns at most one digest's worth per call.</summary>
    public async Task<byte[]> GetRandomAsync(int count, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, 1 << 16);
        var result = new byte[count];
        var filled = 0;
        while (filled < count)
        {
            var want = (ushort)Math.Min(count - filled, TpmConst.MaxDigest);
            var (_, parameters) = await ExecuteAsync(TpmCommandCode.GetRandom, [], null, new TpmWriter().WriteUInt16(want), 0, cancellationToken).ConfigureAwait(false);
            var r = new TpmReader(parameters);
            var bytes = r.ReadSized(want, "randomBytes");
            r.ExpectEnd("GetRandom response");
            if (bytes.IsEmpty)
            {
                throw new TpmException("TPM2_GetRandom returned no bytes");
            }
            bytes.CopyTo(result.AsSpan(filled));
            filled += bytes.Length;
        }
        return result;
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            await _transport.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
            _gate.Dispose();
        }
    }

    private async Task<(uint[] Handles, byte[] Parameters)> ExecuteAsync(
        TpmCommandCode command, uint[] handles, ReadOnlyMemory<byte>[]? auths, TpmWriter parameters, int responseHandles, CancellationToken cancellationToken,
        uint[]? sessions = null)
    {
        var (rc, result) = await TryExecuteAsync(command, handles, auths, parameters, responseHandles, cancellationToken, sessions).ConfigureAwait(false);
        ThrowIfError(command, rc);
        return result;
    }

    private async Task<(TpmResponseCode Code, (uint[] Handles, byte[] Parameters) Result)> TryExecuteAsync(
        TpmCommandCode command, uint[] handles, ReadOnlyMemory<byte>[]? auths, TpmWriter parameters, int responseHandles, CancellationToken cancellationToken,
        uint[]? sessions = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var bytes = BuildCommand(command, handles, auths, parameters, sessions);
        try
        {
            await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                var delay = _options.RetryDelay;
                for (var attempt = 0; ; attempt++)
                {
                    var response = await _transport.TransmitAsync(bytes, cancellationToken).ConfigureAwait(false);
                    var rc = ReadResponseCode(response);
                    if (rc.IsRetryable && attempt < _options.MaxRetries)
                    {
                        await Task.Delay(delay, _options.TimeProvider, cancellationToken).ConfigureAwait(false);
                        delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxRetryDelay.Ticks));
                        continue;
                    }
                    if (!rc.IsSuccess)
                    {
                        return (rc, ([], []));
                    }
                    return (rc, ParseResponse(response, auths is not null, responseHandles, auths?.Length ?? 0));
                }
            }
            finally
            {
                _gate.Release();
            }
        }
        finally
        {
            if (auths is not null)
            {
                CryptographicOperations.ZeroMemory(bytes);
            }
        }
    }

    private static void ThrowIfError(TpmCommandCode command, TpmResponseCode rc)
    {
        if (!rc.IsSuccess)
        {
            throw new TpmException(command, rc);
        }
    }

    /// <summary>
    /// Marshals a command. Each entry of <paramref name="auths"/> is a password for TPM_RS_PW, or, where
    /// <paramref name="sessions"/> names a policy session, that session's (empty) HMAC: an unbound, unsalted policy
    /// session without PolicyAuthValue has no HMAC key, so the TPM expects none.
    /// </summary>
    internal static byte[] BuildCommand(TpmCommandCode command, uint[] handles, ReadOnlyMemory<byte>[]? auths, TpmWriter parameters, uint[]? sessions = null)
    {
        var w = new TpmWriter(TpmConst.HeaderSize + (handles.Length * 4) + 64 + parameters.Length);
        w.WriteUInt16(auths is null ? TpmConst.StNoSessions : TpmConst.StSessions).WriteUInt32(0).WriteUInt32((uint)command);
        foreach (var h in handles)
        {
            w.WriteUInt32(h);
        }
        if (auths is not null)
        {
            var sizeAt = w.Length;
            w.WriteUInt32(0);
            for (var i = 0; i < auths.Length; i++)
            {
                // TPMS_AUTH_COMMAND: handle, empty nonce, attributes (continueSession for passwords; a policy session
                // is used once and then flushed by the TPM), password or HMAC.
                var session = sessions?[i] ?? TpmConst.PasswordSession;
                w.WriteUInt32(session).WriteUInt16(0).WriteByte(session == TpmConst.PasswordSession ? (byte)0x01 : (byte)0x00).WriteSized(auths[i].Span);
            }
            w.PatchUInt32(sizeAt, (uint)(w.Length - sizeAt - 4));
        }
        w.WriteBytes(parameters.Written);
        w.PatchUInt32(2, (uint)w.Length);
        var result = w.ToArray();
        if (auths is not null)
        {
            w.Clear();
        }
        return result;
    }

    internal static TpmResponseCode ReadResponseCode(ReadOnlySpan<byte> response)
    {
        if (response.Length < TpmConst.HeaderSize)
        {
            throw new TpmFormatException($"TPM response of {response.Length} bytes is shorter than its header");
        }
        var tag = BinaryPrimitives.ReadUInt16BigEndian(response);
        var size = BinaryPrimitives.ReadUInt32BigEndian(response[2..]);
        if (size != response.Length)
        {
            throw new TpmFormatException($"TPM response header says {size} bytes, {response.Length} arrived");
        }
        if (tag is not TpmConst.StNoSessions and not TpmConst.StSessions)
        {
            throw new TpmFormatException($"TPM response tag 0x{tag:X4} is unknown");
        }
        var rc = new TpmResponseCode(BinaryPrimitives.ReadUInt32BigEndian(response[6..]));
        if (!rc.IsSuccess && response.Length != TpmConst.HeaderSize)
        {
            throw new TpmFormatException("TPM error response carries a body");
        }
        return rc;
    }

    internal static (uint[] Handles, byte[] Parameters) ParseResponse(ReadOnlySpan<byte> response, bool sessions, int handleCount, int sessionCount)
    {
        var r = new TpmReader(response);
        var tag = r.ReadUInt16();
        r.ReadUInt32();
        r.ReadUInt32();
        if (tag != (sessions ? TpmConst.StSessions : TpmConst.StNoSessions))
        {
            throw new TpmFormatException($"TPM response tag 0x{tag:X4} does not match the command's session use");
        }
        var handles = new uint[handleCount];
        for (var i = 0; i < handleCount; i++)
        {
            handles[i] = r.ReadUInt32();
        }
        byte[] parameters;
        if (sessions)
        {
            var size = r.ReadUInt32();
            if (size > (uint)r.Remaining)
            {
                throw new TpmFormatException($"TPM response parameter size {size} exceeds the {r.Remaining} bytes left");
            }
            parameters = r.ReadBytes((int)size).ToArray();
            for (var i = 0; i < sessionCount; i++)
            {
                r.ReadSized(TpmConst.MaxDigest, "session nonce");
                r.ReadByte();
                r.ReadSized(TpmConst.MaxDigest, "session hmac");
            }
            r.ExpectEnd("response authorisation area");
        }
        else
        {
            parameters = r.ReadBytes(r.Remaining).ToArray();
        }
        return (handles, parameters);
    }

    private static TpmCreatePrimaryResult ParseCreatePrimary(uint handle, byte[] parameters)
    {
        var r = new TpmReader(parameters);
        var pub = ReadPublicArea(ref r);
        r.ReadSized(2048, "creationData");
        r.ReadSized(TpmConst.MaxDigest, "creationHash");
        r.ReadUInt16(); // creationTicket.tag
        r.ReadUInt32(); // creationTicket.hierarchy
        r.ReadSized(TpmConst.MaxDigest, "creationTicket.digest");
        var name = r.ReadSized(TpmConst.MaxName, "name").ToArray();
        r.ExpectEnd("CreatePrimary response");
        return new TpmCreatePrimaryResult(handle, pub, name);
    }

    private static byte[] ReadPublicArea(ref TpmReader r)
    {
        var pub = r.ReadSized(TpmEccPublicKey.MaxPublicAreaSize, "TPM2B_PUBLIC").ToArray();
        if (pub.Length == 0)
        {
            throw new TpmFormatException("TPM2B_PUBLIC is empty");
        }
        return pub;
    }

    private static byte[] ParsePcrEvent(byte[] parameters)
    {
        var r = new TpmReader(parameters);
        var count = r.ReadUInt32();
        if (count > 16)
        {
            throw new TpmFormatException($"PCR_Event reported {count} digests, at most 16 allowed");
        }
        byte[]? sha256 = null;
        for (var i = 0; i < count; i++)
        {
            var alg = r.ReadUInt16();
            var size = TpmAlg.DigestSize(alg);
            if (size < 0)
            {
                throw new TpmFormatException($"PCR_Event reported unknown hash 0x{alg:X4}");
            }
            var digest = r.ReadBytes(size);
            if (alg == TpmAlg.Sha256)
            {
                sha256 = digest.ToArray();
            }
        }
        r.ExpectEnd("PCR_Event response");
        return sha256 ?? throw new TpmException("the TPM has no active SHA-256 PCR bank");
    }

    private static List<(int Index, byte[] Value)> ParsePcrRead(byte[] parameters)
    {
        var r = new TpmReader(parameters);
        r.ReadUInt32(); // pcrUpdateCounter
        var selections = TpmPcrSelection.ReadList(ref r);
        var count = r.ReadUInt32();
        if (count > 8)
        {
            throw new TpmFormatException($"PCR_Read returned {count} digests, at most 8 allowed");
        }
        var indices = new List<int>();
        foreach (var s in selections)
        {
            if (s.HashAlg != TpmAlg.Sha256 && s.Indices.Count > 0)
            {
                throw new TpmFormatException($"PCR_Read returned bank 0x{s.HashAlg:X4}, which was not requested");
            }
            indices.AddRange(s.Indices);
        }
        if (indices.Count != count)
        {
            throw new TpmFormatException($"PCR_Read selected {indices.Count} PCRs but returned {count} digests");
        }
        var result = new List<(int, byte[])>();
        foreach (var index in indices)
        {
            var v = r.ReadSized(TpmConst.MaxDigest, "PCR value");
            if (v.Length != 32)
            {
                throw new TpmFormatException($"SHA-256 PCR {index} value has {v.Length} bytes");
            }
            result.Add((index, v.ToArray()));
        }
        r.ExpectEnd("PCR_Read response");
        return result;
    }

    private static void CheckPcr(int pcr)
    {
        if (pcr is < 0 or >= TpmConst.PcrCount)
        {
            throw new ArgumentOutOfRangeException(nameof(pcr), pcr, "PCR index must be 0-23");
        }
    }
}
