using System.Text.Json;
using System.Text.Json.Nodes;
using Asterism.Attestation.Simulated;
using Asterism.Attestation.Tpm;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Asterism.Attestation;

/// <summary>
/// What a verifier accepts: the variant, the expected measurements and which attestation keys are trusted. The CLI
/// builds it from asterism-conf.yaml, sends it to the first node at init, and control-plane nodes hand it on in
/// their join tickets, so every JoinService judges nodes by the same policy. Serialised as JSON.
/// </summary>
public sealed class AttestationPolicy
{
    /// <summary>Policy documents are small; larger input is refused before parsing.</summary>
    public const int MaxJsonBytes = 64 * 1024;

    public required AttestationVariant Variant { get; init; }

    public required Measurements Measurements { get; init; }

    /// <summary>
    /// Accept any attestation key. Only for simulated test clusters: it makes every key trusted because it signed,
    /// so the configuration refuses it for the tpm variant and every CLI command warns.
    /// </summary>
    public bool TrustAnyKey { get; init; }

    /// <summary>
    /// The provider CA certificate (PEM): attestation keys it certifies are trusted, and the identity (instance name
    /// and role) their certificates name is what key release decides by.
    /// </summary>
    public string? ProviderCa { get; init; }

    /// <summary>Trusted attestation keys: lowercase hex SHA-256 of each key's SubjectPublicKeyInfo.</summary>
    public IReadOnlyList<string> TrustedKeys { get; init; } = [];

    /// <summary>
    /// This policy for key release (join, rejoin, recovery): PCR 15 must still be zero, i.e. the node has not yet
    /// received keys in this boot.
    /// </summary>
    public AttestationPolicy ForKeyRelease() => new()
    {
        Variant = Variant,
        Measurements = Measurements.WithZeroPcr15(),
        TrustAnyKey = TrustAnyKey,
        TrustedKeys = TrustedKeys,
        ProviderCa = ProviderCa,
    };

    /// <summary>
    /// This policy for a running node of the cluster <paramref name="clusterId"/> (key rotation): PCR 15 must be the
    /// value one cluster-ID event leaves (<see cref="Measurements.ClusterIdPcr15"/>) — neither zero (a node that has
    /// no keys in this boot asks through join/rejoin, under <see cref="ForKeyRelease"/>) nor another cluster's.
    /// The key-release policy is not touched: it keeps requiring zero.
    /// </summary>
    public AttestationPolicy ForRunningNode(ReadOnlySpan<byte> clusterId) => WithMeasurements(Measurements.WithClusterIdPcr15(clusterId));

    /// <summary>This policy with other expected measurements (same key trust).</summary>
    public AttestationPolicy WithMeasurements(Measurements measurements) => new()
    {
        Variant = Variant,
        Measurements = measurements,
        TrustAnyKey = TrustAnyKey,
        TrustedKeys = TrustedKeys,
        ProviderCa = ProviderCa,
    };

    /// <summary>The identity authority of <see cref="ProviderCa"/>, or null.</summary>
    public Identities.IdentityAuthority? CreateIdentityAuthority()
    {
        if (ProviderCa is null)
        {
            return null;
        }
        try
        {
            return Identities.IdentityAuthority.FromPem(ProviderCa);
        }
        catch (Exception e) when (e is ArgumentException or FormatException)
        {
            throw new MeasurementsFormatException("attestation policy: providerCa is not a usable ECDSA P-256 CA certificate (" + e.Message + ")");
        }
    }

    /// <summary>Builds the validator of this policy's variant.</summary>
    public IAttestationValidator CreateValidator(ILoggerFactory? loggers = null)
    {
        loggers ??= NullLoggerFactory.Instance;
        if (Variant == AttestationVariant.Simulated)
        {
            var options = new SimulatedValidatorOptions { Measurements = Measurements, TrustAnyKey = TrustAnyKey, IdentityAuthority = CreateIdentityAuthority() };
            foreach (var key in TrustedKeys)
            {
                options.TrustedKeyFingerprints.Add(key);
            }
            return new SimulatedValidator(options, loggers.CreateLogger("attestation"));
        }
        if (Variant == AttestationVariant.Tpm)
        {
            if (TrustAnyKey)
            {
                throw new ArgumentException("trustAnyKey is refused for the tpm variant: configure the provider CA");
            }
            var options = new TpmValidatorOptions { Measurements = Measurements, IdentityAuthority = CreateIdentityAuthority() };
            foreach (var key in TrustedKeys)
            {
                options.TrustedKeyFingerprints.Add(key);
            }
            return new TpmValidator(options, loggers.CreateLogger("attestation"));
        }
        throw new NotSupportedException($"no validator is available for attestation variant \"{Variant.Name}\"");
    }

    public byte[] ToJson()
    {
        var node = new JsonObject
        {
            ["variant"] = Variant.Name,
            ["trustAnyKey"] = TrustAnyKey,
            ["trustedKeys"] = new JsonArray(TrustedKeys.Select(k => (JsonNode?)JsonValue.Create(k)).ToArray()),
            ["providerCa"] = ProviderCa,
            ["measurements"] = JsonNode.Parse(MeasurementsFormat.ToJson(Measurements)),
        };
        return JsonSerializer.SerializeToUtf8Bytes(node);
    }

    /// <summary>Parses the JSON form; throws <see cref="MeasurementsFormatException"/> naming the problem.</summary>
    public static AttestationPolicy FromJson(ReadOnlySpan<byte> json)
    {
        try
        {
            return Parse(json);
        }
        catch (MeasurementsFormatException)
        {
            throw;
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or FormatException or KeyNotFoundException or JsonException)
        {
            // Untrusted input (init requests, join tickets): every malformation is this one documented exception.
            throw new MeasurementsFormatException("attestation policy: malformed (" + ex.GetType().Name + ")");
        }
    }

    /// <summary>
    /// Checks that a validator can be built from this policy (e.g. that some key is trusted), so a node refuses a
    /// policy at init or join time instead of failing on every later boot.
    /// </summary>
    public void EnsureUsable()
    {
        if (!TrustAnyKey && TrustedKeys.Count == 0 && ProviderCa is null)
        {
            throw new MeasurementsFormatException("attestation policy trusts no attestation key (no providerCa, trustedKeys empty, trustAnyKey false)");
        }
        try
        {
            _ = CreateValidator();
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or InvalidOperationException)
        {
            throw new MeasurementsFormatException("attestation policy cannot be used: " + ex.Message);
        }
    }

    private static AttestationPolicy Parse(ReadOnlySpan<byte> json)
    {
        if (json.Length > MaxJsonBytes)
        {
            throw new MeasurementsFormatException($"attestation policy is {json.Length} bytes, at most {MaxJsonBytes} are accepted");
        }
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { MaxDepth = 8 }) as JsonObject
                ?? throw new MeasurementsFormatException("attestation policy is not a JSON object");
        }
        catch (JsonException)
        {
            throw new MeasurementsFormatException("attestation policy is not valid JSON");
        }
        foreach (var (name, _) in root)
        {
            if (name is not ("variant" or "trustAnyKey" or "trustedKeys" or "measurements" or "providerCa"))
            {
                throw new MeasurementsFormatException($"attestation policy: unknown field \"{name}\"");
            }
        }
        try
        {
            var variantName = root["variant"]?.GetValue<string>();
            if (!AttestationVariant.TryParse(variantName, out var variant))
            {
                throw new MeasurementsFormatException($"attestation policy: unknown variant \"{variantName}\"");
            }
            var trustedKeys = root["trustedKeys"]?.AsArray().Select(k => k?.GetValue<string>() ?? "").ToList() ?? [];
            foreach (var key in trustedKeys)
            {
                if (key.Length != 64 || !key.All(c => c is >= '0' and <= '9' or >= 'a' and <= 'f'))
                {
                    throw new MeasurementsFormatException("attestation policy: trustedKeys entries must be 64 lowercase hex digits");
                }
            }
            var measurements = root["measurements"] is { } m ? MeasurementsFormat.ParseJson(m.ToJsonString()) : Measurements.Empty;
            return new AttestationPolicy
            {
                Variant = variant,
                TrustAnyKey = root["trustAnyKey"]?.GetValue<bool>() ?? false,
                TrustedKeys = trustedKeys,
                Measurements = measurements,
                ProviderCa = root["providerCa"]?.GetValue<string>(),
            };
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException)
        {
            throw new MeasurementsFormatException("attestation policy: a field has the wrong type");
        }
    }
}
