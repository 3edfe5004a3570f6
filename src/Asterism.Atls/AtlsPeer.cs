using Asterism.Attestation;

namespace Asterism.Atls;

/// <summary>What aTLS established about the peer of one connection.</summary>
public sealed record AtlsPeer(AttestationFacts Facts, IReadOnlyList<string> Warnings, string RemoteEndPoint)
{
    public AttestationVariant Variant => Facts.Variant;
    public IReadOnlyDictionary<int, byte[]> Pcrs => Facts.Pcrs;
    public string AttestationKeyFingerprint => Facts.AttestationKeyFingerprint;
}

/// <summary>Set on a connection's features (and so visible from each request's features) once the client attested.</summary>
public interface IAtlsPeerFeature
{
    AtlsPeer Peer { get; }
}

internal sealed record AtlsPeerFeature(AtlsPeer Peer) : IAtlsPeerFeature;

/// <summary>The nonce a server sent to a client that must attest; kept on the connection for the validation step.</summary>
internal sealed record AtlsServerNonceFeature(byte[] Nonce);
