namespace Asterism.Tpm.Tests;

/// <summary>
/// Who can reach a swtpm: only the account that started it. Its sockets live in a 0700 directory and there is no
/// TCP port, so another local user (here `nobody`, via setpriv) is refused by the filesystem before the TPM sees a byte.
/// </summary>
public sealed class SwtpmAccessTests
{
    private const UnixFileMode ReadWriteExecute = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    [Fact]
    public async Task Start_Always_StateDirectoryPrivateAndNoTcpPort()
    {
        await using var swtpm = await TestSwtpm.StartAsync();
        var dir = Path.GetDirectoryName(swtpm.Process.SocketPath)!;
        Assert.Equal(ReadWriteExecute, File.GetUnixFileMode(dir));
        Assert.Equal(ReadWriteExecute, File.GetUnixFileMode(swtpm.Process.StateDirectory));
        Assert.StartsWith("swtpm:path=/", swtpm.Process.Tcti, StringComparison.Ordinal);
        Assert.Equal(swtpm.Process.SocketPath + ".ctrl", swtpm.Process.ControlSocketPath);
        // swtpm writes its state after the first command: then every state file is 0600.
        await using (var client = await swtpm.ConnectAsync())
        {
            await client.GetRandomAsync(8, CancellationToken.None);
        }
        await swtpm.Process.ResetAsync(CancellationToken.None);
        foreach (var file in Directory.GetFiles(swtpm.Process.StateDirectory, "tpm2-*"))
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        }
        // No listening TCP socket belongs to this swtpm.
        var inodes = SocketInodesOf(swtpm.Process.ProcessId);
        Assert.NotEmpty(inodes);
        var tcp = (await File.ReadAllLinesAsync("/proc/net/tcp")).Concat(await File.ReadAllLinesAsync("/proc/net/tcp6"))
            .Skip(1).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Where(f => f.Length > 9).Select(f => f[9]);
        Assert.Empty(tcp.Intersect(inodes));
    }

    [Fact]
    public async Task Connect_AsAnotherUser_RefusedByFilesystemPermissions()
    {
        Assert.True(Environment.UserName == "root", "this test switches to the user nobody with setpriv and needs root");
        await using var swtpm = await TestSwtpm.StartAsync();

        // Control: the owner reaches the TPM with the same tool and TCTI.
        var own = await Tpm2Tools.RunAsync(swtpm.Process.Tcti, "tpm2_getrandom", "8", "--hex");
        Assert.True(own.ExitCode == 0, own.Stderr);

        var other = await Tpm2Tools.RunAsync(swtpm.Process.Tcti, "setpriv",
            "--reuid=nobody", "--regid=nogroup", "--clear-groups", "tpm2_getrandom", "8", "--hex");
        Assert.NotEqual(0, other.ExitCode);
        Assert.Contains("Failed to connect", other.Stderr, StringComparison.Ordinal);
        Assert.Empty(other.Stdout);

        // Our own client, running as nobody, is refused the same way (permission denied, not "no such file").
        var connect = await Tpm2Tools.RunAsync(null, "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            "/usr/bin/python3", "-c", $"import socket; s=socket.socket(socket.AF_UNIX); s.connect('{swtpm.Process.SocketPath}')");
        Assert.NotEqual(0, connect.ExitCode);
        Assert.Contains("PermissionError", connect.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConnectEndpoint_SocketServedByAnotherUser_RefusedBeforeAnyByte()
    {
        Assert.True(Environment.UserName == "root", "this test switches to the user nobody with setpriv and needs root");
        // The attacker listens where the operator may point --tpm: a directory everyone can write (/tmp).
        var dir = Directory.CreateTempSubdirectory("asterism-evil-tpm-").FullName;
        File.SetUnixFileMode(dir, (UnixFileMode)0x1FF); // 0777
        var path = Path.Combine(dir, "tpm.sock");
        const string Listener = "import os,socket,sys\n"
            + "s=socket.socket(socket.AF_UNIX);s.bind(sys.argv[1]);os.chmod(sys.argv[1],0o777);s.listen(1);print('ready',flush=True)\n"
            + "c,_=s.accept();c.settimeout(10);n=0\n"
            + "try:\n while True:\n  d=c.recv(4096)\n  if not d: break\n  n+=len(d)\nexcept Exception: pass\n"
            + "print(n,flush=True)\n";
        var psi = new System.Diagnostics.ProcessStartInfo("setpriv") { UseShellExecute = false, RedirectStandardOutput = true };
        foreach (var a in new[] { "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", Listener, path })
        {
            psi.ArgumentList.Add(a);
        }
        using var attacker = System.Diagnostics.Process.Start(psi)!;
        try
        {
            Assert.Equal("ready", await attacker.StandardOutput.ReadLineAsync());
            var refused = await Assert.ThrowsAsync<TpmException>(async () =>
            {
                await using var client = await TpmClient.ConnectEndpointAsync("unix:" + path, null, CancellationToken.None);
                // Reached only without the check: an authorised command sends the endorsement auth in clear.
                await client.CreatePrimaryAsync(TpmHierarchy.Endorsement, new byte[] { 0, 1 }, new byte[32], CancellationToken.None);
            });
            Assert.Contains("another user", refused.Message, StringComparison.Ordinal);
            Assert.Equal("0", await attacker.StandardOutput.ReadLineAsync());
        }
        finally
        {
            if (!attacker.HasExited)
            {
                attacker.Kill();
            }
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task ConnectEndpoint_DevicePathOthersCanWrite_Refused()
    {
        // /dev/shm is writable by everyone: a "device" there could be another user's file or FIFO.
        var file = Path.Combine("/dev/shm", $"asterism-tpm-{Guid.NewGuid():N}");
        await File.WriteAllBytesAsync(file, []);
        var link = Path.Combine("/dev/shm", $"asterism-tpm-link-{Guid.NewGuid():N}");
        File.CreateSymbolicLink(link, file);
        try
        {
            foreach (var endpoint in new[] { file, link, "/dev/../dev/shm/x" })
            {
                await Assert.ThrowsAsync<ArgumentException>(() => TpmClient.ConnectEndpointAsync(endpoint, null, CancellationToken.None));
            }
        }
        finally
        {
            File.Delete(link);
            File.Delete(file);
        }
    }

    private static HashSet<string> SocketInodesOf(int pid)
    {
        var result = new HashSet<string>(StringComparer.Ordinal);
        foreach (var fd in Directory.GetFiles($"/proc/{pid}/fd"))
        {
            var target = new FileInfo(fd).LinkTarget;
            if (target is not null && target.StartsWith("socket:[", StringComparison.Ordinal))
            {
                result.Add(target["socket:[".Length..^1]);
            }
        }
        return result;
    }
}

public sealed class SwtpmSocketArgumentTests
{
    [Theory]
    [InlineData("unix:/run/x/tpm.sock", "/run/x/tpm.sock")]
    [InlineData("/run/x/tpm.sock", "/run/x/tpm.sock")]
    public void ParseSocketArgument_UnixPath_Accepted(string value, string expected) =>
        Assert.Equal(expected, SwtpmSocketTransport.ParseSocketArgument(value));

    [Theory]
    [InlineData("127.0.0.1:2321")]
    [InlineData("localhost:2321")]
    [InlineData("[::1]:2321")]
    [InlineData("tcp:127.0.0.1:2321")]
    [InlineData("unix:relative/tpm.sock")]
    [InlineData("tpm.sock")]
    [InlineData("unix:")]
    [InlineData("")]
    [InlineData(null)]
    public void ParseSocketArgument_TcpOrRelative_Refused(string? value) =>
        Assert.Throws<ArgumentException>(() => SwtpmSocketTransport.ParseSocketArgument(value));

    [Fact]
    public void ParseSocketArgument_LongerThanSunPath_Refused() =>
        Assert.Throws<ArgumentException>(() => SwtpmSocketTransport.ParseSocketArgument("/" + new string('a', 120)));
}
