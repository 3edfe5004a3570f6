namespace Asterism.Tpm;

/// <summary>Tuning for <see cref="TpmClient"/>; the defaults suit swtpm and hardware TPMs alike.</summary>
public sealed class TpmClientOptions
{
    /// <summary>How many times a command is resent after TPM_RC_RETRY, TPM_RC_YIELDED or TPM_RC_TESTING.</summary>
    public int MaxRetries { get; init; } = 10;

    /// <summary>Delay before the first resend; it doubles per attempt up to <see cref="MaxRetryDelay"/>.</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromMilliseconds(2);

    public TimeSpan MaxRetryDelay { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Responses larger than this are refused (TPM buffers are 4 KiB; leave headroom).</summary>
    public int MaxResponseSize { get; init; } = 8192;

    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;
}
