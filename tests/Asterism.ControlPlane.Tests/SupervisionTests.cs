using System.Diagnostics;
using System.Runtime.InteropServices;
using Asterism.Tests;

namespace Asterism.ControlPlane.Tests;

public sealed partial class SupervisionTests
{
    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    private static bool IsEtcdRunning(int pid)
    {
        try
        {
            // A zombie has an empty cmdline; a reused PID would not name etcd.
            return File.ReadAllText($"/proc/{pid}/cmdline").Contains("etcd", StringComparison.Ordinal) &&
                   !File.ReadAllText($"/proc/{pid}/stat").Split(' ')[2].Equals("Z", StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
    }

    [Fact]
    public async Task SupervisorKilled_WithSigkill_EtcdDiesWithIt()
    {
        await using var cluster = TestCluster.Create();
        var options = cluster.Options(0);
        var psi = new ProcessStartInfo("dotnet")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
        };
        foreach (var a in new[]
        {
            Path.Combine(AppContext.BaseDirectory, "asterism-controlplane-testhost.dll"),
            options.Name, options.Address.ToString(), options.DataDirectory, options.Tls.CertificatePath, options.Tls.KeyPath, options.Tls.CaPath,
        })
        {
            psi.ArgumentList.Add(a);
        }
        using var host = Process.Start(psi)!;
        int etcdPid;
        try
        {
            using var hang = new CancellationTokenSource(Poll.Hang);
            var line = await host.StandardOutput.ReadLineAsync(hang.Token);
            Assert.True(line is not null && line.StartsWith("etcd ", StringComparison.Ordinal), $"host said '{line}'");
            etcdPid = int.Parse(line["etcd ".Length..], System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(IsEtcdRunning(etcdPid));
        }
        finally
        {
            host.Kill();
        }
        await host.WaitForExitAsync();
        try
        {
            Assert.True(await Poll.UntilAsync(() => !IsEtcdRunning(etcdPid), Poll.Hang), $"etcd {etcdPid} outlived its supervisor");
        }
        finally
        {
            if (IsEtcdRunning(etcdPid))
            {
                _ = Kill(etcdPid, 9);
            }
        }
    }
}
