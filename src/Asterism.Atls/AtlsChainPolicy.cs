using System.Security.Cryptography.X509Certificates;

namespace Asterism.Atls;

/// <summary>
/// The chain policy of every aTLS stream. SslStream builds a chain of the peer's certificate before any validation
/// callback runs, and by default downloads a missing issuer from the Authority Information Access address in that
/// certificate: an address the peer chooses (anyone, before attestation), possibly off loopback. aTLS trusts the
/// attestation document, never a chain, so the chain needs nothing from the network.
/// </summary>
public static class AtlsChainPolicy
{
    /// <summary>A fresh policy: no downloads, no revocation checks.</summary>
    public static X509ChainPolicy NoDownloads() => new()
    {
        DisableCertificateDownloads = true,
        RevocationMode = X509RevocationMode.NoCheck,
    };
}
