namespace Asterism.Logging;

/// <summary>
/// The log contract every component follows: its messages live in one typed log class of
/// <c>[LoggerMessage]</c> methods whose templates are fixed texts (values go into fields, never into the message),
/// each method ends with <see cref="CallerFileKey"/> and <see cref="CallerLineKey"/> caller-info parameters so the
/// JSON line names its call site, and its event ids stay inside the component's range below.
/// </summary>
public static class LogContract
{
    /// <summary>Name of the <c>[CallerFilePath]</c> parameter of a log method; the JSON formatter turns it and
    /// <see cref="CallerLineKey"/> into the <c>caller</c> field instead of writing them as fields.</summary>
    public const string CallerFileKey = "callerFile";

    /// <summary>Name of the <c>[CallerLineNumber]</c> parameter of a log method.</summary>
    public const string CallerLineKey = "callerLine";

    /// <summary>Event-id range per component (assembly name), inclusive. A component that does not log yet keeps its
    /// range so its first message has a home.</summary>
    public static IReadOnlyDictionary<string, (int First, int Last)> EventIdRanges { get; } = new Dictionary<string, (int, int)>(StringComparer.Ordinal)
    {
        ["Asterism.Logging"] = (100, 199),
        ["Asterism.Node"] = (1000, 1999),
        ["Asterism.JoinService"] = (2000, 2999),
        ["Asterism.Cli"] = (3000, 3999),
        ["Asterism.Atls"] = (4000, 4999),
        ["Asterism.Attestation"] = (5000, 5999),
        ["Asterism.Disk"] = (6000, 6499),
        ["Asterism.Tpm"] = (6500, 6999),
        ["Asterism.Cloud"] = (7000, 7899),
        ["Asterism.Cloud.Host"] = (7900, 7999),
        ["Asterism.ControlPlane"] = (8000, 8499),
    };
}
