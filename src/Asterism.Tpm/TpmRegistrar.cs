using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Asterism.Tpm;

/// <summary>The kinds of endorsement key a registrar can use: the TCG EK profile's RSA-2048 (L-1) and ECC NIST P-256 (L-2) keys.</summary>
public enum TpmEkType
{
    Rsa,
    Ecc,
}

/// <summary>Outcome of a registration; anything but <see cref="Certified"/> means no certificate was issued.</summary>
public enum TpmRegistrationStatus
{
    Certified,
    EkCertificateMissing,
    EkCertificateMalformed,
    EkCertificateUntrusted,
    EkNotAcceptable,
    EkPublicMismatch,
    AkNotAcceptable,
    ActivationFailed,
    SecretMismatch,
}

/// <summary>What <see cref="TpmRegistrar"/> concluded: the status, a reason for the log (no secrets) and, when certified, the DER certificate.</summary>
public sealed record TpmRegistrationResult(TpmRegistrationStatus Status, string Reason, byte[]? IdentityCertificate)
{
    public bool IsCertified => Status == TpmRegistrationStatus.Certified;
}

/// <summary>
/// Certifies an attestation key only after proving that it lives in a TPM whose EK a trusted manufacturer
/// certified, as Keylime's registrar does:
/// (1) read the EK certificate from the TPM's NV index (RSA-2048 at 0x01C00002, else ECC P-256 at 0x01C0000A, in the
/// order of <see cref="EndorsementKeyTypes"/>) and chain it to the configured manufacturer CA(s);
/// (2) read the EK from the TPM (persistent handle, else re-created from the standard template) and check it is the
/// certified key, with the standard EK attributes and policy;
/// (3) check the AK is a restricted signing key fixed to its TPM;
/// (4) TPM2_MakeCredential in software: a fresh 32-byte secret bound to the EK (RSA-OAEP or ECDH seed) and the AK's name;
/// (5) the TPM runs TPM2_ActivateCredential (EK authorised by PolicySecret(endorsement), AK by its password) — it
/// only succeeds when the AK with exactly that name is loaded next to that EK;
/// (6) the recovered secret is compared in constant time; only then (7) the certify delegate issues the AK's
/// identity certificate, whose subject key must be the AK. Nothing here is swtpm-specific: a real TPM at
/// /dev/tpmrm0 is registered the same way with its manufacturer's EK CA.
/// </summary>
public sealed class TpmRegistrar
{
    /// <summary>NV index of the RSA-2048 EK certificate (TCG EK profile).</summary>
    public const uint RsaEkCertificateIndex = 0x01C00002;

    /// <summary>Persistent handle of the RSA-2048 EK (TCG provisioning guidance).</summary>
    public const uint RsaEkHandle = 0x81010001;

    /// <summary>NV index of the ECC NIST P-256 EK certificate (TCG EK profile, template L-2).</summary>
    public const uint EccEkCertificateIndex = 0x01C0000A;

    /// <summary>Persistent handle of the ECC P-256 EK (TCG provisioning guidance).</summary>
    public const uint EccEkHandle = 0x81010002;

    private const int SecretSize = 32;
    private const uint TpmRcHandle = 0x08B;

    private readonly X509Certificate2Collection _manufacturerCas;
    private readonly Func<byte[], byte[]> _certify;
    private readonly TimeProvider _time;

    /// <param name="manufacturerCas">The EK CA certificates to trust (the provider's, or a TPM vendor's from configuration).</param>
    /// <param name="certify">Issues the identity certificate for an AK given as DER SubjectPublicKeyInfo; returns DER.</param>
    /// <param name="time">Clock for certificate validity.</param>
    public TpmRegistrar(X509Certificate2Collection manufacturerCas, Func<byte[], byte[]> certify, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(manufacturerCas);
        ArgumentNullException.ThrowIfNull(certify);
        if (manufacturerCas.Count == 0)
        {
            throw new ArgumentException("at least one EK manufacturer CA is needed", nameof(manufacturerCas));
        }
        _manufacturerCas = manufacturerCas;
        _certify = certify;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>
    /// Which EK certificates are looked for, in order; the first one the TPM holds is used (an absent index moves on,
    /// any other problem refuses). Both RSA and ECC by default, RSA first.
    /// </summary>
    public IReadOnlyList<TpmEkType> EndorsementKeyTypes { get; init; } = [TpmEkType.Rsa, TpmEkType.Ecc];

    /// <summary>The NV index of the EK certificate of <paramref name="type"/>.</summary>
    public static uint CertificateIndex(TpmEkType type) => type == TpmEkType.Ecc ? EccEkCertificateIndex : RsaEkCertificateIndex;

    /// <summary>
    /// Loads the EK CA certificate(s) registrars trust from a PEM file — the local provider's manufacturer CA, or a
    /// TPM vendor's EK CA bundle for hardware TPMs. Throws <see cref="TpmException"/> when it holds no certificate.
    /// </summary>
    public static X509Certificate2Collection LoadManufacturerCas(string pemPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(pemPath);
        var collection = new X509Certificate2Collection();
        try
        {
            if (new FileInfo(pemPath).Length > 1024 * 1024)
            {
                throw new TpmException($"EK CA file {pemPath} is larger than 1 MiB");
            }
            collection.ImportFromPemFile(pemPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw new TpmException($"EK CA file {pemPath} cannot be read: {e.Message}", e);
        }
        if (collection.Count == 0)
        {
            throw new TpmException($"EK CA file {pemPath} holds no certificate");
        }
        return collection;
    }

    /// <summary>Registers <paramref name="ak"/>, loaded on <paramref name="tpm"/>; the endorsement auth authorises the EK.</summary>
    public Task<TpmRegistrationResult> RegisterAsync(TpmClient tpm, TpmAttestationKey ak, ReadOnlyMemory<byte> endorsementAuth, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tpm);
        ArgumentNullException.ThrowIfNull(ak);
        return RegisterAsync(tpm, ak.PublicKey, endorsementAuth,
            (ekHandle, credential, ct) => ActivateAsync(tpm, ak.Handle, ekHandle, endorsementAuth, credential, ct), cancellationToken);
    }

    /// <summary>
    /// The TPM side of step 5: a policy session satisfying PolicySecret(TPM_RH_ENDORSEMENT) authorises the EK,
    /// the AK's empty password its ADMIN role. The session is flushed whatever happens.
    /// </summary>
    public static async Task<byte[]> ActivateAsync(
        TpmClient tpm, uint akHandle, uint ekHandle, ReadOnlyMemory<byte> endorsementAuth, TpmMadeCredential credential, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tpm);
        ArgumentNullException.ThrowIfNull(credential);
        var session = await tpm.StartPolicySessionAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await tpm.PolicySecretAsync((uint)TpmHierarchy.Endorsement, endorsementAuth, session, cancellationToken).ConfigureAwait(false);
            return await tpm.ActivateCredentialAsync(akHandle, ReadOnlyMemory<byte>.Empty, ekHandle, session,
                credential.CredentialBlob, credential.EncryptedSecret, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            try
            {
                await tpm.FlushContextAsync(session, CancellationToken.None).ConfigureAwait(false);
            }
            catch (TpmException)
            {
                // Consumed by a successful ActivateCredential (continueSession clear).
            }
        }
    }

    /// <summary>The protocol with the TPM side pluggable (tests replace it to play a lying or foreign TPM).</summary>
    internal async Task<TpmRegistrationResult> RegisterAsync(
        TpmClient tpm, TpmEccPublicKey akPublic, ReadOnlyMemory<byte> endorsementAuth,
        Func<uint, TpmMadeCredential, CancellationToken, Task<byte[]>> activate, CancellationToken cancellationToken)
    {
        // 1. The EK certificate, from the TPM itself, chained to a manufacturer we trust.
        byte[]? certificateBytes = null;
        var ekType = TpmEkType.Rsa;
        foreach (var type in EndorsementKeyTypes)
        {
            try
            {
                certificateBytes = await tpm.NvReadAsync(CertificateIndex(type), ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);
                ekType = type;
                break;
            }
            catch (TpmException e) when (e.ResponseCode is { } rc && rc.BaseCode == TpmRcHandle)
            {
                // Not provisioned: try the next kind.
            }
        }
        if (certificateBytes is null)
        {
            var looked = string.Join(" or ", EndorsementKeyTypes.Select(t => $"0x{CertificateIndex(t):X8}"));
            return Refuse(TpmRegistrationStatus.EkCertificateMissing, $"the TPM has no EK certificate at NV {looked}");
        }
        using var ekCertificate = ParseCertificate(certificateBytes);
        if (ekCertificate is null)
        {
            return Refuse(TpmRegistrationStatus.EkCertificateMalformed, "the EK certificate is not a DER X.509 certificate");
        }
        if (ChainError(ekCertificate) is { } chainError)
        {
            return Refuse(TpmRegistrationStatus.EkCertificateUntrusted, $"the EK certificate ({ekCertificate.Issuer}) does not chain to a trusted manufacturer CA: {chainError}");
        }

        // 2. The EK in the TPM is the certified key.
        var (ek, refusal) = ekType == TpmEkType.Ecc
            ? await LoadEccEkAsync(tpm, ekCertificate, endorsementAuth, cancellationToken).ConfigureAwait(false)
            : await LoadRsaEkAsync(tpm, ekCertificate, endorsementAuth, cancellationToken).ConfigureAwait(false);
        if (ek is null)
        {
            return refusal!;
        }
        var ekHandle = ek.Handle;
        try
        {
            // 3. Only a restricted signing key can make a quote trustworthy.
            const TpmObjectAttributes fixedKey = TpmObjectAttributes.FixedTpm | TpmObjectAttributes.FixedParent;
            if (!akPublic.IsRestrictedSigningKey || (akPublic.Attributes & fixedKey) != fixedKey)
            {
                return Refuse(TpmRegistrationStatus.AkNotAcceptable, "the AK is not a restricted signing key fixed to its TPM");
            }

            // 4-6. Credential activation proves the AK sits in the EK's TPM.
            var secret = RandomNumberGenerator.GetBytes(SecretSize);
            byte[]? recovered = null;
            try
            {
                var credential = ek.Make(akPublic.ComputeName(), secret);
                try
                {
                    recovered = await activate(ekHandle, credential, cancellationToken).ConfigureAwait(false);
                }
                catch (TpmException e)
                {
                    return Refuse(TpmRegistrationStatus.ActivationFailed, $"credential activation failed: {e.Message}");
                }
                if (!CryptographicOperations.FixedTimeEquals(secret, recovered))
                {
                    return Refuse(TpmRegistrationStatus.SecretMismatch, "the TPM returned a different secret than the credential held");
                }
            }
            finally
            {
                CryptographicOperations.ZeroMemory(secret);
                CryptographicOperations.ZeroMemory(recovered);
            }
        }
        finally
        {
            if (ek.Transient)
            {
                await tpm.FlushContextAsync(ekHandle, CancellationToken.None).ConfigureAwait(false);
            }
        }

        // 7. Certify the AK, and check the issuer certified that key and no other.
        var akSpki = akPublic.ExportSubjectPublicKeyInfo();
        var issued = _certify(akSpki);
        using (var identity = ParseCertificate(issued) ?? throw new InvalidOperationException("the certify delegate returned no DER certificate"))
        {
            if (!identity.PublicKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(akSpki))
            {
                throw new InvalidOperationException("the certify delegate certified a key other than the AK");
            }
        }
        return new TpmRegistrationResult(TpmRegistrationStatus.Certified, $"AK {Convert.ToHexString(akPublic.ComputeName())} certified", issued);
    }

    private static TpmRegistrationResult Refuse(TpmRegistrationStatus status, string reason) => new(status, reason, null);

    private static X509Certificate2? ParseCertificate(byte[] der)
    {
        try
        {
            return X509CertificateLoader.LoadCertificate(der);
        }
        catch (CryptographicException)
        {
            return null;
        }
    }

    private string? ChainError(X509Certificate2 certificate)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(_manufacturerCas);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.VerificationTime = _time.GetUtcNow().UtcDateTime;
        chain.ChainPolicy.VerificationTimeIgnored = false;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        if (chain.Build(certificate))
        {
            return null;
        }
        var problems = chain.ChainStatus.Select(s => s.Status.ToString()).Distinct();
        return string.Join(", ", problems);
    }

    /// <summary>An EK checked against its certificate: where it is loaded, whether to flush it, and MakeCredential for it.</summary>
    private sealed record LoadedEk(uint Handle, bool Transient, Func<byte[], byte[], TpmMadeCredential> Make);

    private static async Task<(LoadedEk? Ek, TpmRegistrationResult? Refusal)> LoadRsaEkAsync(
        TpmClient tpm, X509Certificate2 ekCertificate, ReadOnlyMemory<byte> endorsementAuth, CancellationToken cancellationToken)
    {
        using var certifiedRsa = ekCertificate.GetRSAPublicKey();
        if (certifiedRsa is null)
        {
            return (null, Refuse(TpmRegistrationStatus.EkNotAcceptable, "the RSA EK certificate does not certify an RSA key"));
        }
        var certified = certifiedRsa.ExportParameters(false);
        var (handle, area, transient) = await LoadEkAsync(tpm, RsaEkHandle, TpmCredential.RsaEkTemplate(), endorsementAuth, cancellationToken).ConfigureAwait(false);
        TpmRegistrationResult? refusal;
        try
        {
            var ekPublic = TpmRsaPublicKey.Parse(area);
            if (!TpmCredential.IsStandardEndorsementKey(ekPublic))
            {
                refusal = Refuse(TpmRegistrationStatus.EkNotAcceptable, "the TPM's EK lacks the standard attributes, AES-128-CFB or the endorsement policy");
            }
            else if (!certified.Modulus.AsSpan().SequenceEqual(ekPublic.Modulus) || !certified.Exponent.AsSpan().SequenceEqual(ekPublic.Exponent))
            {
                refusal = Refuse(TpmRegistrationStatus.EkPublicMismatch, "the TPM's EK is not the key its EK certificate certifies");
            }
            else
            {
                return (new LoadedEk(handle, transient, (name, secret) => TpmCredential.Make(ekPublic, name, secret)), null);
            }
        }
        catch (TpmFormatException e)
        {
            refusal = Refuse(TpmRegistrationStatus.EkNotAcceptable, $"the TPM's RSA EK cannot be parsed: {e.Message}");
        }
        await ReleaseAsync(tpm, handle, transient).ConfigureAwait(false);
        return (null, refusal);
    }

    private static async Task<(LoadedEk? Ek, TpmRegistrationResult? Refusal)> LoadEccEkAsync(
        TpmClient tpm, X509Certificate2 ekCertificate, ReadOnlyMemory<byte> endorsementAuth, CancellationToken cancellationToken)
    {
        ECParameters certified;
        using (var certifiedEc = ekCertificate.GetECDiffieHellmanPublicKey())
        {
            if (certifiedEc is null)
            {
                return (null, Refuse(TpmRegistrationStatus.EkNotAcceptable, "the ECC EK certificate does not certify an EC key"));
            }
            certified = certifiedEc.ExportParameters(false);
        }
        if (!certified.Curve.IsNamed || certified.Curve.Oid.Value != ECCurve.NamedCurves.nistP256.Oid.Value)
        {
            return (null, Refuse(TpmRegistrationStatus.EkNotAcceptable, "the ECC EK certificate does not certify a NIST P-256 key"));
        }
        var (handle, area, transient) = await LoadEkAsync(tpm, EccEkHandle, TpmCredential.EccEkTemplate(), endorsementAuth, cancellationToken).ConfigureAwait(false);
        TpmRegistrationResult? refusal;
        try
        {
            var ekPublic = TpmEccPublicKey.Parse(area);
            if (!TpmCredential.IsStandardEndorsementKey(ekPublic))
            {
                refusal = Refuse(TpmRegistrationStatus.EkNotAcceptable, "the TPM's ECC EK lacks the standard attributes, AES-128-CFB or the endorsement policy");
            }
            else if (!certified.Q.X.AsSpan().SequenceEqual(ekPublic.X) || !certified.Q.Y.AsSpan().SequenceEqual(ekPublic.Y))
            {
                refusal = Refuse(TpmRegistrationStatus.EkPublicMismatch, "the TPM's ECC EK is not the key its EK certificate certifies");
            }
            else
            {
                return (new LoadedEk(handle, transient, (name, secret) => TpmCredential.Make(ekPublic, name, secret)), null);
            }
        }
        catch (TpmFormatException e)
        {
            refusal = Refuse(TpmRegistrationStatus.EkNotAcceptable, $"the TPM's ECC EK is not a P-256 key: {e.Message}");
        }
        await ReleaseAsync(tpm, handle, transient).ConfigureAwait(false);
        return (null, refusal);
    }

    private static async Task ReleaseAsync(TpmClient tpm, uint handle, bool transient)
    {
        if (transient)
        {
            await tpm.FlushContextAsync(handle, CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static async Task<(uint Handle, byte[] PublicArea, bool Transient)> LoadEkAsync(
        TpmClient tpm, uint persistentHandle, byte[] template, ReadOnlyMemory<byte> endorsementAuth, CancellationToken cancellationToken)
    {
        try
        {
            var read = await tpm.ReadPublicAsync(persistentHandle, cancellationToken).ConfigureAwait(false);
            return (persistentHandle, read.PublicArea, false);
        }
        catch (TpmException e) when (e.ResponseCode is { } rc && rc.BaseCode == TpmRcHandle)
        {
            // Not persisted (common on real TPMs): the standard template re-creates the certified key from the seed.
            var created = await tpm.CreatePrimaryAsync(TpmHierarchy.Endorsement, template, endorsementAuth, cancellationToken).ConfigureAwait(false);
            return (created.Handle, created.PublicArea, true);
        }
    }
}
