using Asterism.Crypto;

namespace Asterism.EndToEnd.Tests.Infrastructure;

/// <summary>The printable forms in which key bytes could leak into a log: hex (lower and upper case) and base64 variants.</summary>
public static class KeyForms
{
    public sealed record Secret(string Label, byte[] Bytes);

    /// <summary>Master key, master salt, measurement secret and the disk key of every given disk.</summary>
    public static IReadOnlyList<Secret> ClusterSecrets(MasterSecret master, IEnumerable<string> diskUuids, string label = "")
    {
        using var measurement = KeyDerivation.DeriveMeasurementSecret(master);
        var secrets = new List<Secret>
        {
            new(label + "master key", master.Key.ToArray()),
            new(label + "master salt", master.Salt.ToArray()),
            new(label + "measurement secret", measurement.ToArray()),
        };
        foreach (var uuid in diskUuids)
        {
            using var disk = KeyDerivation.DeriveDiskKey(master, uuid);
            secrets.Add(new(label + "disk key of " + uuid, disk.ToArray()));
        }
        return secrets;
    }

    /// <summary>Each form with its name: hex, HEX, base64, base64 unpadded, base64url unpadded.</summary>
    public static IEnumerable<(string Form, string Text)> Forms(byte[] bytes)
    {
        var base64 = Convert.ToBase64String(bytes);
        yield return ("hex", Convert.ToHexStringLower(bytes));
        yield return ("HEX", Convert.ToHexString(bytes));
        yield return ("base64", base64);
        yield return ("base64 unpadded", base64.TrimEnd('='));
        yield return ("base64url", base64.TrimEnd('=').Replace('+', '-').Replace('/', '_'));
    }

    /// <summary>Every (secret, form) found in <paramref name="text"/>, named by <paramref name="where"/>.</summary>
    public static IEnumerable<string> FindIn(string text, string where, IEnumerable<Secret> secrets) =>
        from secret in secrets
        from form in Forms(secret.Bytes)
        where text.Contains(form.Text, StringComparison.Ordinal)
        select $"{secret.Label} ({form.Form}) found in {where}";
}
