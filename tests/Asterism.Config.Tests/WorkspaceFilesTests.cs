namespace Asterism.Config.Tests;

public sealed class WorkspaceFilesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("asterism-cfg-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string Pcr = new('a', 64);
    private static readonly string Zero = new('0', 64);

    private static string ConfYaml(string measurements = "", string extra = "") => $"""
        version: v1
        provider: local
        attestation:
          variant: simulated
          trustAnyKey: true
          measurements:
            4:
              expected: {Pcr}
              warnOnly: false
            15:
              expected: {Zero}
              warnOnly: true
        {measurements}
        nodes:
          controlPlanes: 3
          workers: 2
        {extra}
        """;

    private static string StateYaml(string clusterValues = "") => $"""
        version: v1
        infrastructure:
          uid: 1a2b3c4d
          name: asterism-1a2b3c4d
          clusterEndpoint: 127.42.7.2
          inClusterEndpoint: 127.42.7.2
          local:
            subnet: 127.42.7
            metadataEndpoint: http://127.42.7.1:8080
        clusterValues:
        {clusterValues}
        """;

    [Fact]
    public void ClusterConfig_SaveLoad_RoundTrip()
    {
        var config = ClusterConfig.Parse(ConfYaml());
        Assert.Equal("simulated", config.Attestation.Variant);
        Assert.Equal(Pcr, config.Attestation.Measurements[4].Expected);
        Assert.True(config.Attestation.Measurements[15].WarnOnly);
        var path = Path.Combine(_dir, ClusterConfig.FileName);
        config.Save(path);
        var again = ClusterConfig.Load(path);
        Assert.Equal(WorkspaceFile.Serialize(config), WorkspaceFile.Serialize(again));
        Assert.Equal([4, 15], again.Attestation.Measurements.Keys);
        Assert.Equal(3, again.Nodes.ControlPlanes);
    }

    [Fact]
    public void ClusterState_SaveLoad_RoundTrip()
    {
        var state = ClusterState.Parse(StateYaml($"  clusterID: {Pcr}\n  measurementSalt: {Zero}"));
        Assert.True(state.IsInitialized);
        var path = Path.Combine(_dir, ClusterState.FileName);
        state.Save(path);
        Assert.Contains("clusterID: " + Pcr, File.ReadAllText(path));
        var again = ClusterState.Load(path);
        Assert.Equal(Pcr, again.ClusterValues.ClusterId);
        Assert.Equal("127.42.7", again.Infrastructure.Local!.Subnet);
    }

    [Fact]
    public void ClusterState_BeforeInit_Valid()
    {
        var state = ClusterState.Parse(StateYaml());
        Assert.False(state.IsInitialized);
    }

    public static TheoryData<string, string> BadConfigs => new()
    {
        { ConfYaml(extra: "colour: blue"), "unknown field \"colour\"" },
        { ConfYaml().Replace("version: v1", "version: v9", StringComparison.Ordinal), "version: unsupported version \"v9\"" },
        { ConfYaml().Replace("provider: local", "provider: aws", StringComparison.Ordinal), "provider: unknown provider \"aws\"" },
        { ConfYaml().Replace("variant: simulated", "variant: sev", StringComparison.Ordinal), "attestation.variant: unknown variant \"sev\"" },
        { ConfYaml().Replace(Pcr, "abc", StringComparison.Ordinal), "attestation.measurements.4.expected: must be 64 lowercase hex digits" },
        { ConfYaml().Replace(Pcr, Pcr.ToUpperInvariant(), StringComparison.Ordinal), "attestation.measurements.4.expected" },
        { ConfYaml().Replace("    4:", "    24:", StringComparison.Ordinal), "attestation.measurements.24: PCR index must be 0-23" },
        { ConfYaml().Replace("controlPlanes: 3", "controlPlanes: 0", StringComparison.Ordinal), "nodes.controlPlanes: must be between 1 and 64" },
        { ConfYaml().Replace("workers: 2", "workers: -1", StringComparison.Ordinal), "nodes.workers" },
        { ConfYaml().Replace("trustAnyKey: true", "trustAnyKey: false", StringComparison.Ordinal), "attestation.providerCa: missing while trustedKeys is empty" },
        { ConfYaml().Replace("variant: simulated", "variant: tpm", StringComparison.Ordinal), "attestation.trustAnyKey: is refused with the tpm variant" },
        { ConfYaml().Replace("trustAnyKey: true", "providerCa: not a certificate", StringComparison.Ordinal), "attestation.providerCa: must be a PEM certificate" },
        { ConfYaml().Replace("controlPlanes: 3", "controlPlanes: many", StringComparison.Ordinal), "line" },
        { "version: [", "line" },
    };

    [Theory]
    [MemberData(nameof(BadConfigs))]
    public void ClusterConfig_BadInput_NamesField(string yaml, string expected)
    {
        var ex = Assert.Throws<WorkspaceFileException>(() => ClusterConfig.Parse(yaml));
        Assert.Contains(expected, ex.Message);
        Assert.StartsWith(ClusterConfig.FileName, ex.Message);
    }

    private static string TestCertificatePem(string name)
    {
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest($"CN={name}", key, System.Security.Cryptography.HashAlgorithmName.SHA256);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddYears(1));
        return certificate.ExportCertificatePem() + "\n";
    }

    [Fact]
    public void ClusterConfig_TpmManufacturerCaBundle_RoundTrips()
    {
        var config = ClusterConfig.Parse(ConfYaml());
        var bundle = TestCertificatePem("Vendor root") + TestCertificatePem("Vendor intermediate");
        config.Attestation.TpmManufacturerCa = bundle;
        var path = Path.Combine(_dir, ClusterConfig.FileName);

        config.Save(path);

        Assert.Equal(bundle, ClusterConfig.Load(path).Attestation.TpmManufacturerCa);
    }

    public static TheoryData<string, string> BadManufacturerCas => new()
    {
        { "not a certificate", "must hold PEM certificates" },
        { "", "must hold PEM certificates" },
        { "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "must hold PEM certificates" },
        // Valid base64, valid PEM framing, but not DER: accepted by a label check alone.
        { "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n", "block 1 is not an X.509 certificate" },
        { "-----BEGIN PRIVATE KEY-----\nAAAAAAAA\n-----END PRIVATE KEY-----\n", "block 1 is \"PRIVATE KEY\"" },
        { TestCertificatePem("Vendor") + "-----BEGIN PUBLIC KEY-----\nAAAAAAAA\n-----END PUBLIC KEY-----\n", "block 2 is \"PUBLIC KEY\"" },
        { TestCertificatePem("Vendor") + "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "block 2 is not an X.509 certificate" },
    };

    [Theory]
    [MemberData(nameof(BadManufacturerCas))]
    public void ClusterConfig_TpmManufacturerCaNotCertificates_Refused(string value, string expected)
    {
        var config = ClusterConfig.Parse(ConfYaml());
        config.Attestation.TpmManufacturerCa = value;

        var ex = Assert.Throws<WorkspaceFileException>(() => config.Validate());

        Assert.StartsWith($"{ClusterConfig.FileName}: attestation.tpmManufacturerCa: ", ex.Message, StringComparison.Ordinal);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Throws<WorkspaceFileException>(() => config.Save(Path.Combine(_dir, ClusterConfig.FileName)));
        Assert.False(File.Exists(Path.Combine(_dir, ClusterConfig.FileName)));
    }

    public static TheoryData<string, string> BadStates => new()
    {
        { StateYaml().Replace("uid: 1a2b3c4d", "uid: ''", StringComparison.Ordinal), "infrastructure.uid: missing" },
        { StateYaml().Replace("  name: asterism-1a2b3c4d\n", "", StringComparison.Ordinal), "infrastructure.name: missing" },
        { StateYaml().Replace("clusterEndpoint: 127.42.7.2", "clusterEndpoint: 10.0.0.1", StringComparison.Ordinal), "infrastructure.clusterEndpoint: \"10.0.0.1\" is not a loopback address" },
        { StateYaml().Replace("subnet: 127.42.7", "subnet: 192.168.1", StringComparison.Ordinal), "infrastructure.local.subnet" },
        { StateYaml().Replace("subnet: 127.42.7", "subnet: 127.300.1", StringComparison.Ordinal), "infrastructure.local.subnet" },
        { StateYaml($"  clusterID: {Pcr}"), "clusterValues.measurementSalt: must be 64 lowercase hex digits" },
        { StateYaml($"  clusterID: zz\n  measurementSalt: {Zero}"), "clusterValues.clusterID: must be 64 lowercase hex digits" },
        { StateYaml("  ownerID: x"), "unknown field \"ownerID\"" },
        { StateYaml().Replace("version: v1", "version: v2", StringComparison.Ordinal), "version: unsupported version" },
    };

    [Theory]
    [MemberData(nameof(BadStates))]
    public void ClusterState_BadInput_NamesField(string yaml, string expected)
    {
        var ex = Assert.Throws<WorkspaceFileException>(() => ClusterState.Parse(yaml));
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void Load_MissingFile_SaysWhere()
    {
        var ex = Assert.Throws<WorkspaceFileException>(() => ClusterState.Load(Path.Combine(_dir, ClusterState.FileName)));
        Assert.Contains("not found in " + _dir, ex.Message);
    }

    [Fact]
    public void Load_OversizedFile_Refused()
    {
        var path = Path.Combine(_dir, ClusterConfig.FileName);
        File.WriteAllText(path, "# " + new string('x', WorkspaceFile.MaxFileSize));
        var ex = Assert.Throws<WorkspaceFileException>(() => ClusterConfig.Load(path));
        Assert.Contains("too large", ex.Message);
    }

    [Fact]
    public void ClusterConfig_MissingOptionalSections_TakeDocumentedDefaults()
    {
        var config = ClusterConfig.Parse("version: v1\nprovider: local\nattestation:\n  trustedKeys: [" + new string('a', 64) + "]\n");
        Assert.Equal("simulated", config.Attestation.Variant);
        Assert.False(config.Attestation.TrustAnyKey);
        Assert.Equal(3, config.Nodes.ControlPlanes);
        Assert.Equal(2, config.Nodes.Workers);
    }

    [Fact]
    public void ClusterConfig_NoAttestationTrust_IsRefused()
    {
        // Fail closed: a configuration that names no provider CA and pins no key trusts nobody, and never "anybody".
        var ex = Assert.Throws<WorkspaceFileException>(() => ClusterConfig.Parse("version: v1\nprovider: local\n"));
        Assert.Contains("attestation.providerCa: missing", ex.Message);
    }
}
