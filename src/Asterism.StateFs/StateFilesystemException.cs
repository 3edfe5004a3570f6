namespace Asterism.StateFs;

/// <summary>Why mounting or cleaning the state filesystem failed.</summary>
public enum StateFilesystemError
{
    /// <summary>The passphrase does not open the image's keyslot.</summary>
    WrongKey,

    /// <summary>This machine cannot do it (e.g. no device-mapper for dm-crypt, not root for a loop device).</summary>
    Unsupported,

    /// <summary>No ext4 on the volume and formatting was not allowed.</summary>
    NoFilesystem,

    /// <summary>A required program is not installed.</summary>
    ToolMissing,

    /// <summary>A system tool returned an error.</summary>
    ToolFailed,
}

/// <summary>A state filesystem operation failed; the message names the command, never a key.</summary>
public sealed class StateFilesystemException(StateFilesystemError error, string message) : Exception(message)
{
    /// <summary>The reason.</summary>
    public StateFilesystemError Error { get; } = error;
}
