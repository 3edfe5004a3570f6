namespace Asterism.ControlPlane;

/// <summary>Node and member names: what goes into etcd keys and certificate subjects must be short and plain.</summary>
public static class NodeNames
{
    /// <summary>The longest accepted name (a DNS label).</summary>
    public const int MaxLength = 63;

    /// <summary>Whether <paramref name="name"/> is 1–63 characters of a-z, 0-9 and '-', not starting with '-'.</summary>
    public static bool IsValid(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= MaxLength && name[0] != '-' &&
        name.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-');

    /// <summary>Throws <see cref="ControlPlaneException"/> (InvalidRequest) naming the bad name.</summary>
    public static void Validate(string? name)
    {
        if (!IsValid(name))
        {
            throw new ControlPlaneException(ControlPlaneError.InvalidRequest,
                $"'{Truncate(name)}' is not a valid node name (1-63 of a-z, 0-9, '-')");
        }
    }

    private static string Truncate(string? name) => name is null ? "" : name.Length <= 64 ? name : name[..64] + "...";
}
