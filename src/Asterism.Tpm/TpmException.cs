namespace Asterism.Tpm;

/// <summary>
/// A TPM command failed: the TPM answered with an error code (<see cref="ResponseCode"/> set), the transport broke,
/// or the response was malformed (<see cref="TpmFormatException"/>). The client throws nothing else
/// (apart from <see cref="OperationCanceledException"/> and argument checks on the caller's input).
/// </summary>
public class TpmException : Exception
{
    public TpmException(string message)
        : base(message)
    {
    }

    public TpmException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    public TpmException(TpmCommandCode command, TpmResponseCode responseCode)
        : base($"TPM2_{command} failed: {responseCode}")
    {
        Command = command;
        ResponseCode = responseCode;
    }

    /// <summary>The command that failed, when the failure came from the TPM.</summary>
    public TpmCommandCode? Command { get; }

    /// <summary>The decoded response code, when the TPM answered with an error.</summary>
    public TpmResponseCode? ResponseCode { get; }
}

/// <summary>Bytes that should hold a TPM structure are truncated, oversized or inconsistent.</summary>
public sealed class TpmFormatException : TpmException
{
    public TpmFormatException(string message)
        : base(message)
    {
    }

    public TpmFormatException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}
