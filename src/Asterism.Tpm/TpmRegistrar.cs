using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Asterism.Tpm;

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
/// (1) read the EK certificate from the TPM's NV index and chain it to the configured manufacturer CA(s);
/// (2) read the EK from the TPM (persistent handle, else re-created from the standard template) and check it is the
/// certified key, with the standard EK attributes and policy;
/// (3) check the AK is a restricted signing key fixed to its TPM;
/// (4) TPM2_MakeCredential in software: a fresh 32-byte secret bound to the EK and the AK's name;
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
        byte[] certificateBytes;
        try
        {
            certificateBytes = await tpm.NvReadAsync(RsaEkCertificateIndex, ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);
        }
        catch (TpmException e) when (e.ResponseCode is { } rc && rc.BaseCode == TpmRcHandle)
        {
            return Refuse(TpmRegistrationStatus.EkCertificateMissing, $"the TPM has no EK certificate at NV 0x{RsaEkCertificateIndex:X8}");
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
        using var certifiedRsa = ekCertificate.GetRSAPublicKey();
        if (certifiedRsa is null)
        {
            return Refuse(TpmRegistrationStatus.EkNotAcceptable, "the EK certificate does not certify an RSA key");
        }

        // 2. The EK in the TPM is the certified key.
        var (ekHandle, ekPublic, transient) = await LoadEkAsync(tpm, endorsementAuth, cancellationToken).ConfigureAwait(false);
        try
        {
            if (!TpmCredential.IsStandardEndorsementKey(ekPublic))
            {
                return Refuse(TpmRegistrationStatus.EkNotAcceptable, "the TPM's EK lacks the standard attributes, AES-128-CFB or the endorsement policy");
            }
            var certified = certifiedRsa.ExportParameters(false);
            if (!certified.Modulus.AsSpan().SequenceEqual(ekPublic.Modulus) || !certified.Exponent.AsSpan().SequenceEqual(ekPublic.Exponent))
            {
                return Refuse(TpmRegistrationStatus.EkPublicMismatch, "the TPM's EK is not the key its EK certificate certifies");
            }

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
                var credential = TpmCredential.Make(ekPublic, akPublic.ComputeName(), secret);
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
            if (transient)
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

    private static async Task<(uint Handle, TpmRsaPublicKey Public, bool Transient)> LoadEkAsync(
        TpmClient tpm, ReadOnlyMemory<byte> endorsementAuth, CancellationToken cancellationToken)
    {
        try
        {
            var read = await tpm.ReadPublicAsync(RsaEkHandle, cancellationToken).ConfigureAwait(false);
            return (RsaEkHandle, TpmRsaPublicKey.Parse(read.PublicArea), false);
        }
        catch (TpmException e) when (e.ResponseCode is { } rc && rc.BaseCode == TpmRcHandle)
        {
            // Not persisted (common on real TPMs): the standard template re-creates the certified key from the seed.
            var created = await tpm.CreatePrimaryAsync(TpmHierarchy.Endorsement, TpmCredential.RsaEkTemplate(), endorsementAuth, cancellationToken).ConfigureAwait(false);
            try
            {
                return (created.Handle, TpmRsaPublicKey.Parse(created.PublicArea), true);
            }
            catch
            {
                await tpm.FlushContextAsync(created.Handle, CancellationToken.None).ConfigureAwait(false);
                throw;
            }
        }
    }
}
