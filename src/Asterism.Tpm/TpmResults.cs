namespace Asterism.Tpm;

/// <summary>A primary object created by TPM2_CreatePrimary: its transient handle, TPMT_PUBLIC bytes and name.</summary>
public sealed record TpmCreatePrimaryResult(uint Handle, byte[] PublicArea, byte[] Name);

/// <summary>TPM2_ReadPublic: TPMT_PUBLIC bytes, name and qualified name.</summary>
public sealed record TpmReadPublicResult(byte[] PublicArea, byte[] Name, byte[] QualifiedName);

/// <summary>TPM2_Quote: the signed TPMS_ATTEST bytes and the TPMT_SIGNATURE bytes, both as the TPM produced them.</summary>
public sealed record TpmQuoteResult(byte[] Attest, byte[] Signature);

/// <summary>TPM2_NV_ReadPublic: the index's attributes and data size (TPMS_NV_PUBLIC) and its name.</summary>
public sealed record TpmNvPublic(uint Index, ushort NameAlg, uint Attributes, int DataSize, byte[] Name);
