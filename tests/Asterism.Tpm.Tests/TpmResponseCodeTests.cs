namespace Asterism.Tpm.Tests;

public sealed class TpmResponseCodeTests
{
    [Theory]
    [InlineData(0x1C4u, "TPM_RC_VALUE (0x084) on parameter 1 [rc 0x000001C4]")]
    [InlineData(0x2D6u, "TPM_RC_SYMMETRIC (0x096) on parameter 2 [rc 0x000002D6]")]
    [InlineData(0x18Bu, "TPM_RC_HANDLE (0x08B) on handle 1 [rc 0x0000018B]")]
    [InlineData(0x9A2u, "TPM_RC_BAD_AUTH (0x0A2) on session 1 [rc 0x000009A2]")]
    [InlineData(0x98Eu, "TPM_RC_AUTH_FAIL (0x08E) on session 1 [rc 0x0000098E]")]
    [InlineData(0x084u, "TPM_RC_VALUE (0x084)")]
    [InlineData(0x100u, "TPM_RC_INITIALIZE (0x100)")]
    [InlineData(0x902u, "TPM_RC_OBJECT_MEMORY (0x902)")]
    [InlineData(0x921u, "TPM_RC_LOCKOUT (0x921)")]
    [InlineData(0x922u, "TPM_RC_RETRY (0x922)")]
    public void ToString_KnownCodes_DecodesNameAndNumber(uint value, string expected)
    {
        Assert.Equal(expected, new TpmResponseCode(value).ToString());
    }

    [Fact]
    public void Fields_FormatOneParameter_ExposeNumbers()
    {
        var rc = new TpmResponseCode(0x3C4);
        Assert.True(rc.IsFormatOne);
        Assert.Equal(0x084u, rc.BaseCode);
        Assert.Equal(3, rc.Parameter);
        Assert.Equal(0, rc.Handle);
        Assert.Equal(0, rc.Session);
        Assert.False(rc.IsRetryable);
    }

    [Theory]
    [InlineData(0x922u, true)]
    [InlineData(0x908u, true)]
    [InlineData(0x90Au, true)]
    [InlineData(0x921u, false)]
    [InlineData(0x902u, false)]
    [InlineData(0x1C4u, false)]
    public void IsRetryable_Codes_OnlyRetryYieldedTesting(uint value, bool retryable)
    {
        Assert.Equal(retryable, new TpmResponseCode(value).IsRetryable);
    }

    [Fact]
    public void Name_Tpm12AndVendorCodes_NamedAsSuch()
    {
        Assert.Equal("TPM_RC_TPM12", new TpmResponseCode(0x003).Name);
        Assert.Equal("TPM_RC_VENDOR", new TpmResponseCode(0x401).Name);
        Assert.Equal("TPM_RC_UNKNOWN", new TpmResponseCode(0x17F).Name);
        Assert.True(new TpmResponseCode(0x922).IsWarning);
        Assert.False(new TpmResponseCode(0x101).IsWarning);
    }
}
