using System.CommandLine;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Asterism.Attestation.Identities;
using Asterism.Cloud;
using Asterism.Cloud.Local;
using Asterism.Tpm;

namespace Asterism.Cli.Commands;

/// <summary>
/// <c>asterism tpm enroll NAME --role ROLE --out DIR [--tpm /dev/tpmrm0]</c>: certifies the attestation key of a
/// hardware TPM as node NAME, as the local provider certifies its swtpms: the EK certificate read from the TPM must
/// chain to a TPM vendor's EK CA from <c>attestation.tpmManufacturerCa</c> (or <c>--ek-ca</c>), and the TPM must prove
/// by credential activation that the AK lives next to that EK; only then does the workspace's provider CA issue the
/// identity certificate. DIR becomes the node's directory (0700): provider CA certificate, identity certificate and,
/// when given, the endorsement auth — what <c>asterism-node --tpm /dev/tpmrm0</c> needs to boot with that identity.
/// </summary>
public static class TpmCommand
{
    public static Command Create(GlobalOptions global)
    {
        var name = new Argument<string>("name") { Description = "The node's instance name (lowercase letters, digits, '-', '.')" };
        var role = new Option<string>("--role") { Description = "control-plane or worker", Required = true };
        role.AcceptOnlyFromAmong(CloudNames.ControlPlane, CloudNames.Worker);
        var tpm = new Option<string>("--tpm") { Description = "The TPM: a device (default /dev/tpmrm0) or unix:/path/to/swtpm.sock", DefaultValueFactory = _ => TpmDeviceTransport.DefaultPath };
        var output = new Option<string>("--out") { Description = "The node directory to write (created 0700)", Required = true };
        var ekCa = new Option<string?>("--ek-ca") { Description = "PEM file of the TPM vendor's EK CA certificate(s); default: attestation.tpmManufacturerCa of asterism-conf.yaml" };
        var authFile = new Option<string?>("--endorsement-auth-file") { Description = "File holding the 32-byte endorsement hierarchy auth (0600); default: empty auth" };
        var enroll = new Command("enroll", "Certify a hardware TPM's attestation key as a node's identity, after proving it lives in a TPM of a trusted vendor")
        {
            name, role, tpm, output, ekCa, authFile,
        };
        enroll.SetAction(async (result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var nodeName = result.GetValue(name)!;
            if (!IdentityCertificate.IsValidName(nodeName))
            {
                throw new CliError($"'{nodeName}' is not a valid node name (lowercase letters, digits, '-' and '.', at most 63)", 2);
            }
            CloudNames.TryParseRole(result.GetValue(role), out var nodeRole);
            var outDir = Path.GetFullPath(result.GetValue(output)!);
            // Before any work: root's writes must not land in a directory another user controls.
            PrivateOutputDirectory.Check(outDir, "--out");
            var workspace = new Workspace(global.WorkspaceOf(result));
            workspace.RequireCluster();
            var manufacturers = LoadManufacturerCas(result.GetValue(ekCa), workspace);
            var auth = LoadAuth(result.GetValue(authFile));
            try
            {
                ProviderCa ca;
                try
                {
                    ca = ProviderCa.Load(workspace.Cloud.CloudDir);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or InvalidDataException or CloudConfigException)
                {
                    throw new CliError($"the workspace's provider CA cannot be loaded: {e.Message}");
                }
                using (ca)
                {
                    await using var client = await ConnectAsync(result.GetValue(tpm)!, cancellationToken);
                    EnrollmentOutcome outcome;
                    try
                    {
                        outcome = await AttestationKeyEnrollment.EnrollAsync(client, auth, manufacturers, ca,
                            new InstancePlan(nodeName, nodeRole, ""), outDir, WriteFiles, cancellationToken);
                    }
                    catch (EnrollmentRefusedException e)
                    {
                        throw new CliError($"refused: {e.Message}");
                    }
                    catch (TpmException e) when (IsBadAuth(e))
                    {
                        throw new CliError(auth.Length == 0
                            ? $"the TPM refused the empty endorsement auth ({e.ResponseCode}): pass its endorsement hierarchy auth with --endorsement-auth-file FILE"
                            : $"the TPM refused the endorsement auth of --endorsement-auth-file ({e.ResponseCode}): it is not this TPM's endorsement hierarchy auth");
                    }
                    catch (TpmException e)
                    {
                        throw new CliError($"the TPM failed: {e.Message}");
                    }
                    SaveAuthIfChanged(outDir, auth);
                    await stdout.WriteLineAsync(outcome.Certified
                        ? $"Enrolled {nodeName} ({nodeRole.ToWire()}): attestation key {outcome.AkName[..16]}… certified after credential activation; node directory {outDir}"
                        : $"{nodeName} ({nodeRole.ToWire()}) is already enrolled with this TPM's attestation key in {outDir}; nothing changed");
                }
            }
            finally
            {
                CryptographicOperations.ZeroMemory(auth);
            }
            return 0;
        });
        return new Command("tpm", "Enroll hardware TPMs") { enroll };
    }

    private static X509Certificate2Collection LoadManufacturerCas(string? file, Workspace workspace)
    {
        try
        {
            if (file is not null)
            {
                return TpmRegistrar.LoadManufacturerCas(Path.GetFullPath(file));
            }
            var pem = workspace.LoadConfig().Attestation.TpmManufacturerCa
                ?? throw new CliError("no TPM vendor is trusted: put its EK CA certificate(s) (PEM) into attestation.tpmManufacturerCa of asterism-conf.yaml, or pass --ek-ca FILE");
            var collection = new X509Certificate2Collection();
            collection.ImportFromPem(pem);
            return collection.Count > 0 ? collection : throw new CliError("attestation.tpmManufacturerCa holds no certificate");
        }
        catch (TpmException e)
        {
            throw new CliError(e.Message);
        }
        catch (CryptographicException)
        {
            throw new CliError("attestation.tpmManufacturerCa does not hold readable PEM certificates");
        }
    }

    private static byte[] LoadAuth(string? file)
    {
        if (file is null)
        {
            return [];
        }
        var path = Path.GetFullPath(file);
        // One open handle for every check and the read: the mode and size seen are those of the bytes read, and a
        // huge or endless file (a device, a FIFO) is never read beyond the 32 bytes an auth has.
        Microsoft.Win32.SafeHandles.SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new CliError($"--endorsement-auth-file {path} does not exist");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliError($"--endorsement-auth-file {path} cannot be read: {e.Message}");
        }
        using (handle)
        {
            if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(handle) & OwnerOnly.GroupOrOther) != 0)
            {
                throw new CliError($"--endorsement-auth-file {path} is readable by group or others; run {OwnerOnly.ChmodHint(path)}");
            }
            if (RandomAccess.GetLength(handle) != TpmEndorsementAuth.Length)
            {
                throw new CliError($"--endorsement-auth-file {path} does not hold a {TpmEndorsementAuth.Length}-byte auth");
            }
            var bytes = new byte[TpmEndorsementAuth.Length];
            if (RandomAccess.Read(handle, bytes, 0) != bytes.Length)
            {
                CryptographicOperations.ZeroMemory(bytes);
                throw new CliError($"--endorsement-auth-file {path} does not hold a {TpmEndorsementAuth.Length}-byte auth");
            }
            return bytes;
        }
    }

    /// <summary>Writes the enrollment's files through one verified descriptor of the --out directory.</summary>
    private static void WriteFiles(string outDir, IReadOnlyList<NodeDirectoryFile> files)
    {
        using var directory = PrivateOutputDirectory.Open(outDir, "--out");
        foreach (var file in files)
        {
            directory.WriteFile(file.Name, file.Content);
        }
    }

    /// <summary>
    /// Makes sure --out is the caller's private directory, and writes DIR/tpm-endorsement-auth through its descriptor
    /// unless it already holds exactly this auth (a repeated enroll changes nothing).
    /// </summary>
    private static void SaveAuthIfChanged(string outDir, byte[] auth)
    {
        using var directory = PrivateOutputDirectory.Open(outDir, "--out");
        if (auth.Length == 0)
        {
            return;
        }
        var existing = directory.ReadFile(TpmEndorsementAuth.FileName, TpmEndorsementAuth.Length + 1);
        try
        {
            // A copy of another length, or none, is replaced by a good one; the directory is 0700, so its files are ours.
            if (existing is null || existing.Length != auth.Length || !CryptographicOperations.FixedTimeEquals(existing, auth))
            {
                directory.WriteFile(TpmEndorsementAuth.FileName, auth);
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(existing);
        }
    }

    /// <summary>TPM_RC_BAD_AUTH or TPM_RC_AUTH_FAIL: the hierarchy auth given is not the TPM's.</summary>
    private static bool IsBadAuth(TpmException e) => e.ResponseCode?.BaseCode is 0x0A2 or 0x08E;

    private static async Task<TpmClient> ConnectAsync(string endpoint, CancellationToken cancellationToken)
    {
        try
        {
            return await TpmClient.ConnectEndpointAsync(endpoint, null, cancellationToken);
        }
        catch (ArgumentException e)
        {
            throw new CliError(e.Message, 2);
        }
        catch (Exception e) when (e is TpmException or IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
        {
            throw new CliError($"cannot reach the TPM at {endpoint}: {e.Message}");
        }
    }
}
