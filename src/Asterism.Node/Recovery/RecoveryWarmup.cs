using System.Diagnostics;
using System.Security.Cryptography;
using Asterism.Atls;
using Asterism.Attestation.Identities;
using Asterism.Crypto;
using Asterism.Node.Tickets;
using Asterism.Node.Unlock;
using Asterism.Protocol.Recover;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Node.Recovery;

/// <summary>
/// Runs the code a recover call needs once, while the node waits for its key, so the operator's call finds it compiled
/// and loaded: a freshly started node process spent most of its part of a parallel `recover` JIT-compiling and loading
/// types (measured: 60–70 % of the CPU of the timed window), not on cryptography.
/// <list type="number">
/// <item>A probe of the node's own recovery port over aTLS — the server's attestation document, TLS 1.3, Kestrel's
/// HTTP/2, the gRPC streaming handler — checked as any peer of this cluster is (provider CA, this node's boot PCRs)
/// and expected to be this very node. Its request headers carry <see cref="Token"/> (<see cref="TokenHeader"/>), a
/// random value that never leaves the process, so the server knows the call at its start and logs it at debug level
/// instead of as somebody's recover call — also when it is cancelled or finds the race decided.</item>
/// <item>One key offer of random bytes to the <see cref="KeyRace"/>: the LUKS2 header is read and keyslot 0's KDF,
/// anti-forensic merge and digest run, and the key is refused (a random 256-bit key opens no keyslot). Nothing is
/// mounted and the race stays open.</item>
/// </list>
/// Neither step sends or stores a secret; a failure only means the real call runs cold.
/// </summary>
public sealed class RecoveryWarmup
{
    /// <summary>The request header (binary) that carries <see cref="Token"/>.</summary>
    public const string TokenHeader = "asterism-warmup-token-bin";

    private readonly byte[] _token = RandomNumberGenerator.GetBytes(32);

    /// <summary>The value the node's own probe carries in <see cref="TokenHeader"/>.</summary>
    public ReadOnlyMemory<byte> Token => _token;

    /// <summary>Whether a call's headers carry this process's token (constant time; absent or of another length never is).</summary>
    public bool IsOwn(Metadata headers)
    {
        ArgumentNullException.ThrowIfNull(headers);
        return headers.Get(TokenHeader) is { IsBinary: true } entry
            && entry.ValueBytes.Length == _token.Length
            && CryptographicOperations.FixedTimeEquals(entry.ValueBytes, _token);
    }

    /// <summary>Probes <paramref name="endpoint"/> (this node's recovery listener) and offers one random key; returns how long it took.</summary>
    public async Task<TimeSpan> RunAsync(string endpoint, NodeAttestation attestation, KeyRace race, TimeSpan timeout, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(attestation);
        ArgumentNullException.ThrowIfNull(race);
        var started = Stopwatch.GetTimestamp();
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(timeout);
        await ProbeAsync(endpoint, attestation, limit.Token);
        if (!race.IsDecided)
        {
            var verdict = await race.OfferAsync(RandomKeys(), limit.Token);
            if (verdict is not (KeyVerdict.DiskKeyRejected or KeyVerdict.AlreadyRecovered))
            {
                throw new InvalidOperationException($"a random key was answered with {verdict}, not refused");
            }
        }
        return Stopwatch.GetElapsedTime(started);
    }

    /// <summary>Random bytes in the shape of a recover push (they open nothing); the stack copies are cleared.</summary>
    private static ReceivedKeys RandomKeys()
    {
        Span<byte> key = stackalloc byte[KeyDerivation.KeyLength];
        Span<byte> secret = stackalloc byte[KeyDerivation.KeyLength];
        RandomNumberGenerator.Fill(key);
        RandomNumberGenerator.Fill(secret);
        var keys = new ReceivedKeys(SecretBytes.CopyOf(key), SecretBytes.CopyOf(secret), "warm-up");
        CryptographicOperations.ZeroMemory(key);
        CryptographicOperations.ZeroMemory(secret);
        return keys;
    }

    private async Task ProbeAsync(string endpoint, NodeAttestation attestation, CancellationToken cancellationToken)
    {
        var policy = await JoinServiceTrust.BootPolicyAsync(attestation, cancellationToken);
        // Silent loggers: the client side of this probe is no event; the server logs it at debug level.
        var loggers = NullLoggerFactory.Instance;
        var self = new ExpectedPeerValidator(policy.CreateValidator(loggers),
            ExpectedPeerValidator.Identity(attestation.Identity.Name, attestation.Identity.Role), loggers.CreateLogger("attestation"));
        using var handler = AtlsClient.CreateHandler(self, new AtlsClientOptions { LoggerFactory = loggers });
        using var channel = GrpcChannel.ForAddress($"https://{endpoint}", new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = false,
            MaxReceiveMessageSize = 64 * 1024,
        });
        var client = new API.APIClient(channel);
        using var call = client.Recover(new Metadata { { TokenHeader, _token } }, cancellationToken: cancellationToken);
        await call.RequestStream.WriteAsync(new RecoverMessage { Probe = new Probe() }, cancellationToken);
        await call.RequestStream.CompleteAsync();
        while (await call.ResponseStream.MoveNext(cancellationToken))
        {
            // The node names its disk and ends the call.
        }
    }
}
