namespace Asterism.Protocol;

/// <summary>
/// The init secret of init.proto's <c>init_secret</c>: the CLI makes it (<c>asterism create</c>) and control-plane-0
/// checks it, so both sides take its length from here.
/// </summary>
public static class InitSecretFormat
{
    /// <summary>The init secret is this many random bytes (stored as twice as many lowercase hex digits).</summary>
    public const int Length = 32;
}
