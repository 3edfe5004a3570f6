using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace Asterism.Tpm.Tests;

/// <summary>Lifecycle of a real swtpm: reset, orderly stops, unclean stops, determinism of the attestation key.</summary>
public sealed class SwtpmProcessTests
{
    [Fact]
    public async Task Reset_AfterExtend_PcrsBackToZeroAndKeyUnchanged()
    {
        await using var swtpm = await TestSwtpm.StartAsync();
        byte[] keyBefore;
        await using (var client = await swtpm.ConnectAsync())
        {
            await client.PcrExtendAsync(15, SHA256.HashData("a"u8), CancellationToken.None);
            Assert.NotEqual(new byte[32], (await client.PcrReadAsync([15], CancellationToken.None))[15]);
            await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, default, CancellationToken.None);
            keyBefore = ak.PublicKey.PublicArea.ToArray();
        }

        await swtpm.Process.ResetAsync(CancellationToken.None);

        await using (var client = await swtpm.ConnectAsync())
        {
            Assert.Equal(new byte[32], (await client.PcrReadAsync([15], CancellationToken.None))[15]);
            await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, default, CancellationToken.None);
            Assert.Equal(keyBefore, ak.PublicKey.PublicArea.ToArray());
        }
    }

    [Fact]
    public async Task Stop_FourCleanStopsAfterUsingDaKey_LockoutCounterStaysZeroAndQuotesWork()
    {
        await using var swtpm = await TestSwtpm.StartAsync();
        for (var i = 0; i < 4; i++)
        {
            await using (var c = await swtpm.ConnectAsync())
            {
                await QuoteWithDaProtectedKeyAsync(c);
            }
            await swtpm.RestartAsync();
        }
        Assert.Equal(0, await LockoutCounterAsync(swtpm.Process.Tcti));

        await using var client = await swtpm.ConnectAsync();
        await QuoteWithDaProtectedKeyAsync(client);
        await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, default, CancellationToken.None);
        var nonce = RandomNumberGenerator.GetBytes(32);
        var quote = await ak.QuoteAsync(nonce, [0, 15], CancellationToken.None);
        Assert.True(TpmQuoteVerifier.Verify(ak.PublicKey, quote.Attest, quote.Signature, nonce, quote.Pcrs).IsValid);
    }

    [Fact]
    public async Task Kill_ThreeUncleanStopsAfterUsingDaKey_DaKeyLockedOutButNoDaKeyStillQuotes()
    {
        await using var swtpm = await TestSwtpm.StartAsync();
        for (var i = 0; i < 3; i++)
        {
            await using (var c = await swtpm.ConnectAsync())
            {
                await QuoteWithDaProtectedKeyAsync(c);
            }
            await swtpm.Process.KillAsync();
            await swtpm.RestartAsync();
        }
        Assert.Equal(3, await LockoutCounterAsync(swtpm.Process.Tcti));

        await using var client = await swtpm.ConnectAsync();
        var e = await Assert.ThrowsAsync<TpmException>(() => QuoteWithDaProtectedKeyAsync(client));
        Assert.Equal(TpmResponseCode.Lockout, e.ResponseCode!.Value.Value);
        Assert.Contains("TPM_RC_LOCKOUT (0x921)", e.Message);

        await using var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, default, CancellationToken.None);
        var quote = await ak.QuoteAsync(new byte[32], [0], CancellationToken.None);
        Assert.True(TpmQuoteVerifier.Verify(ak.PublicKey, quote.Attest, quote.Signature, new byte[32], quote.Pcrs).IsValid);
    }

    /// <summary>Quotes once with a key lacking noDA (its first use after startup answers TPM_RC_RETRY, which the client resends).</summary>
    private static async Task QuoteWithDaProtectedKeyAsync(TpmClient client)
    {
        var template = TpmAttestationKey.Template();
        var attributes = (uint)(TpmAttestationKey.KeyAttributes & ~TpmObjectAttributes.NoDa);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(template.AsSpan(4), attributes);
        var key = await client.CreatePrimaryAsync(TpmHierarchy.Owner, template, default, CancellationToken.None);
        try
        {
            await client.QuoteAsync(key.Handle, default, new byte[16], TpmPcrSelection.Sha256([0]), CancellationToken.None);
        }
        finally
        {
            await client.FlushContextAsync(key.Handle, CancellationToken.None);
        }
    }

    [Fact]
    public async Task Restart_SameStateDirectory_AttestationKeyIdentical()
    {
        await using var swtpm = await TestSwtpm.StartAsync();
        byte[] before;
        await using (var client = await swtpm.ConnectAsync())
        await using (var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, default, CancellationToken.None))
        {
            before = ak.PublicKey.PublicArea.ToArray();
        }
        var oldPid = swtpm.Process.ProcessId;

        await swtpm.RestartAsync();

        Assert.NotEqual(oldPid, swtpm.Process.ProcessId);
        await using (var client = await swtpm.ConnectAsync())
        await using (var ak = await TpmAttestationKey.CreateAsync(client, TpmHierarchy.Endorsement, default, CancellationToken.None))
        {
            Assert.Equal(before, ak.PublicKey.PublicArea.ToArray());
        }

        await using var other = await TestSwtpm.StartAsync();
        await using var otherClient = await other.ConnectAsync();
        await using var otherAk = await TpmAttestationKey.CreateAsync(otherClient, TpmHierarchy.Endorsement, default, CancellationToken.None);
        Assert.NotEqual(before, otherAk.PublicKey.PublicArea.ToArray());
    }

    [Fact]
    public async Task Stop_Orderly_ProcessExitsAndPortIsClosed()
    {
        await using var swtpm = await TestSwtpm.StartAsync();
        await swtpm.Process.StopAsync(CancellationToken.None);
        Assert.True(swtpm.Process.HasExited);
        await Assert.ThrowsAsync<TpmException>(() => swtpm.ConnectAsync());
    }

    private static async Task<int> LockoutCounterAsync(string tcti)
    {
        var output = await Tpm2Tools.RunOkAsync(tcti, "tpm2_getcap", "properties-variable");
        var m = Regex.Match(output, @"TPM2_PT_LOCKOUT_COUNTER:\s*(0x[0-9A-Fa-f]+|\d+)");
        Assert.True(m.Success, output);
        var v = m.Groups[1].Value;
        return v.StartsWith("0x", StringComparison.Ordinal) ? Convert.ToInt32(v[2..], 16) : int.Parse(v, System.Globalization.CultureInfo.InvariantCulture);
    }
}
