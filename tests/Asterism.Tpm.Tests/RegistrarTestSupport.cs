using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography.X509Certificates;

namespace Asterism.Tpm.Tests;

/// <summary>
/// Two TPMs manufactured by one CA with the certified EK of <see cref="EkType"/>, endorsement auth set on both: the
/// setup the RSA and the ECC registrar tests share.
/// </summary>
public abstract class ManufacturedTpmPair : IAsyncLifetime
{
    private string _dir = null!;

    public SwtpmManufacturer Manufacturer { get; private set; } = null!;

    public SwtpmProcess TpmA { get; private set; } = null!;

    public SwtpmProcess TpmB { get; private set; } = null!;

    public byte[] AuthA { get; } = TpmEndorsementAuth.Generate();

    public byte[] AuthB { get; } = TpmEndorsementAuth.Generate();

    /// <summary>How long manufacturing TPM A took (swtpm_setup and, for ECC, the EK provisioning).</summary>
    public TimeSpan ManufactureTime { get; private set; }

    protected abstract TpmEkType EkType { get; }

    /// <summary>The temporary directory holding both TPMs' state and the CA.</summary>
    protected string Directory => _dir;

    public virtual async Task InitializeAsync()
    {
        _dir = System.IO.Directory.CreateTempSubdirectory($"asterism-registrar-{EkType.ToString().ToLowerInvariant()}-").FullName;
        Manufacturer = SwtpmManufacturer.LoadOrCreate(Path.Combine(_dir, "manufacturer"));
        var watch = Stopwatch.StartNew();
        await Manufacturer.ManufactureAsync(Path.Combine(_dir, "a"), EkType, CancellationToken.None);
        ManufactureTime = watch.Elapsed;
        await Manufacturer.ManufactureAsync(Path.Combine(_dir, "b"), EkType, CancellationToken.None);
        TpmA = await SwtpmProcess.StartAsync(Path.Combine(_dir, "a"), CancellationToken.None);
        TpmB = await SwtpmProcess.StartAsync(Path.Combine(_dir, "b"), CancellationToken.None);
        foreach (var (tpm, auth) in new[] { (TpmA, AuthA), (TpmB, AuthB) })
        {
            await using var client = await tpm.ConnectAsync(null, CancellationToken.None);
            await client.HierarchyChangeAuthAsync(TpmHierarchy.Endorsement, default, auth, CancellationToken.None);
        }
    }

    public async Task DisposeAsync()
    {
        await TpmA.DisposeAsync();
        await TpmB.DisposeAsync();
        System.IO.Directory.Delete(_dir, recursive: true);
    }
}

/// <summary>Registrars that certify with <see cref="ThrowAwayCa"/> and count what they certified (per test class instance).</summary>
public sealed class CountingRegistrars
{
    private int _certified;

    public int Certified => _certified;

    /// <summary>A registrar trusting EK certificates of <paramref name="trusted"/>.</summary>
    public TpmRegistrar Trusting(SwtpmManufacturer trusted) =>
        new(new X509Certificate2Collection(trusted.Certificate), spki =>
        {
            Interlocked.Increment(ref _certified);
            return ThrowAwayCa.Issue(spki);
        });
}

/// <summary>tpm2-tools' credential file: u32 0xBADCC0DE, u32 version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.</summary>
internal static class ToolsCredentialFile
{
    /// <summary>A TPM2B: big-endian u16 size, then the bytes.</summary>
    public static byte[] Sized(ReadOnlySpan<byte> data)
    {
        var result = new byte[2 + data.Length];
        BinaryPrimitives.WriteUInt16BigEndian(result, (ushort)data.Length);
        data.CopyTo(result.AsSpan(2));
        return result;
    }

    public static byte[] Write(TpmMadeCredential credential)
    {
        var header = new byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(header, 0xBADCC0DE);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(4), 1);
        return [.. header, .. Sized(credential.CredentialBlob), .. Sized(credential.EncryptedSecret)];
    }

    public static (byte[] Blob, byte[] Secret) Read(byte[] file)
    {
        Assert.Equal(0xBADCC0DEu, BinaryPrimitives.ReadUInt32BigEndian(file));
        var blobSize = BinaryPrimitives.ReadUInt16BigEndian(file.AsSpan(8));
        var blob = file.AsSpan(10, blobSize).ToArray();
        var secretSize = BinaryPrimitives.ReadUInt16BigEndian(file.AsSpan(10 + blobSize));
        var secret = file.AsSpan(12 + blobSize, secretSize).ToArray();
        Assert.Equal(file.Length, 12 + blobSize + secretSize);
        return (blob, secret);
    }
}
