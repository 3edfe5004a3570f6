namespace Asterism.Attestation;

/// <summary>The trusted attestation keys of a validator: SHA-256 fingerprints of their SubjectPublicKeyInfo.</summary>
internal static class TrustedKeys
{
    /// <summary>Normalises fingerprints to lowercase; throws <see cref="ArgumentException"/> for anything but 64 hex digits.</summary>
    public static HashSet<string> Parse(IEnumerable<string> fingerprints, string paramName)
    {
        var trusted = new HashSet<string>(StringComparer.Ordinal);
        foreach (var fp in fingerprints)
        {
            if (fp is null || fp.Length != 64 || !fp.All(char.IsAsciiHexDigit))
            {
                throw new ArgumentException("a trusted key fingerprint must be 64 hex digits (SHA-256 of the SubjectPublicKeyInfo)", paramName);
            }
            trusted.Add(fp.ToLowerInvariant());
        }
        return trusted;
    }
}
