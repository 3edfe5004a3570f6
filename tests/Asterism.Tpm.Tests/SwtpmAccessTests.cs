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
