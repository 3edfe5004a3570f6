using System.Text;

namespace Asterism.Crypto.Tests;

public sealed class MasterSecretTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("asterism-ms-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string content)
    {
        var path = Path.Combine(_dir, "ms.json");
        File.WriteAllText(path, content);
        // Only the owner may read a master secret file; these tests are about its content.
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return path;
    }

    [Theory]
    [InlineData(UnixFileMode.GroupRead)]
    [InlineData(UnixFileMode.OtherRead)]
    [InlineData(UnixFileMode.GroupRead | UnixFileMode.OtherRead)]
    [InlineData(UnixFileMode.OtherWrite)]
    public void Load_GroupOrWorldAccessible_RefusedNamingTheChmod(UnixFileMode extra)
    {
        var path = Path.Combine(_dir, MasterSecret.DefaultFileName);
        using (var secret = MasterSecret.Generate())
        {
            secret.Save(path);
        }
        var json = File.ReadAllText(path);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | extra);

        var ex = Assert.Throws<MasterSecretException>(() => MasterSecret.Load(path));

        Assert.Contains($"run: chmod 600 '{path}'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("accessible by group or others", ex.Message, StringComparison.Ordinal);
        foreach (var field in json.Split('"').Where(f => f.Length > 40))
        {
            Assert.DoesNotContain(field, ex.Message, StringComparison.Ordinal);
        }
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        using var loaded = MasterSecret.Load(path);
        Assert.Equal(MasterSecret.GeneratedLength, loaded.Key.Length);
    }

    [Fact]
    public void Load_Mode0644_Refused()
    {
        var path = Path.Combine(_dir, MasterSecret.DefaultFileName);
        using (var secret = MasterSecret.Generate())
        {
            secret.Save(path);
        }
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

        var ex = Assert.Throws<MasterSecretException>(() => MasterSecret.Load(path));

        Assert.Equal($"master secret file \"{path}\" is accessible by group or others (mode 0644); run: chmod 600 '{path}'", ex.Message);
    }

    private static string B64(int length, byte value = 0x5a) => Convert.ToBase64String(Enumerable.Repeat(value, length).ToArray());

    [Fact]
    public void SaveThenLoad_RoundTrip_SameBytesAndMode0600()
    {
        var path = Path.Combine(_dir, MasterSecret.DefaultFileName);
        using var original = MasterSecret.Generate();
        original.Save(path);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        using var loaded = MasterSecret.Load(path);
        Assert.True(loaded.Key.SequenceEqual(original.Key));
        Assert.True(loaded.Salt.SequenceEqual(original.Salt));
        Assert.Equal(32, loaded.Key.Length);
        Assert.Equal(32, loaded.Salt.Length);
    }

    [Fact]
    public void Save_ExistingFile_RefusedAndUntouched()
    {
        var path = Write("keep me");
        using var secret = MasterSecret.Generate();
        var ex = Assert.Throws<MasterSecretException>(() => secret.Save(path));
        Assert.Contains("already exists", ex.Message);
        Assert.Equal("keep me", File.ReadAllText(path));
    }

    [Fact]
    public void Load_ConstellationFormat_Reads()
    {
        // Go's json.MarshalIndent with tabs, standard base64 with padding.
        var path = Write($"{{\n\t\"key\": \"{B64(32, 0xff)}\",\n\t\"salt\": \"{B64(32, 0xff)}\"\n}}");
        using var secret = MasterSecret.Load(path);
        Assert.All(secret.Key.ToArray(), b => Assert.Equal(0xff, b));
    }

    [Fact]
    public void Load_SixteenByteKey_Accepted()
    {
        using var secret = MasterSecret.Load(Write($"{{\"key\":\"{B64(16)}\",\"salt\":\"{B64(32)}\"}}"));
        Assert.Equal(16, secret.Key.Length);
    }

    public static TheoryData<string, string> BadFiles => new()
    {
        { $"{{\"key\":\"{B64(15)}\",\"salt\":\"{B64(32)}\"}}", "key is 15 bytes" },
        { $"{{\"key\":\"{B64(32)}\",\"salt\":\"{B64(31)}\"}}", "salt is 31 bytes" },
        { "{\"key\":", "invalid JSON" },
        { "not json at all", "invalid JSON" },
        { "[1,2]", "not a JSON object" },
        { $"{{\"key\":\"%%%notbase64%%%\",\"salt\":\"{B64(32)}\"}}", "field \"key\" is not valid standard base64" },
        { $"{{\"key\":\"{B64(32)}\",\"salt\":\"{B64(32).Replace('+', '-')}_-\"}}", "field \"salt\" is not valid standard base64" },
        { $"{{\"salt\":\"{B64(32)}\"}}", "missing field \"key\"" },
        { $"{{\"key\":\"{B64(32)}\"}}", "missing field \"salt\"" },
        { $"{{\"key\":42,\"salt\":\"{B64(32)}\"}}", "field \"key\" must be a base64 string" },
        { $"{{\"key\":\"{B64(32)}\",\"key\":\"{B64(32)}\",\"salt\":\"{B64(32)}\"}}", "appears twice" },
        { "", "invalid JSON" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void Load_BadFile_ClearErrorNamingFile(string content, string expected)
    {
        var path = Write(content);
        var ex = Assert.Throws<MasterSecretException>(() => MasterSecret.Load(path));
        Assert.Contains(path, ex.Message);
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void Load_MissingFile_ClearError()
    {
        var path = Path.Combine(_dir, "nope.json");
        var ex = Assert.Throws<MasterSecretException>(() => MasterSecret.Load(path));
        Assert.Contains("does not exist", ex.Message);
        Assert.Contains(path, ex.Message);
    }

    [Fact]
    public void Load_Directory_SaysItIsADirectory()
    {
        var path = Directory.CreateDirectory(Path.Combine(_dir, "secret-dir")).FullName;
        var ex = Assert.Throws<MasterSecretException>(() => MasterSecret.Load(path));
        Assert.Equal($"master secret file \"{path}\" is a directory, not a master secret file", ex.Message);
    }

    [Fact]
    public void Load_OversizedFile_Refused()
    {
        var path = Write(new string(' ', MasterSecret.MaxFileSize + 1));
        var ex = Assert.Throws<MasterSecretException>(() => MasterSecret.Load(path));
        Assert.Contains("too large", ex.Message);
    }

    [Fact]
    public void Load_ShortKey_MessageNeverEchoesSecret()
    {
        var shortKey = B64(15, 0x37);
        var path = Write($"{{\"key\":\"{shortKey}\",\"salt\":\"{B64(32, 0x38)}\"}}");
        var ex = Assert.Throws<MasterSecretException>(() => MasterSecret.Load(path));
        Assert.DoesNotContain(shortKey, ex.ToString());
        Assert.DoesNotContain(B64(32, 0x38), ex.ToString());
        Assert.DoesNotContain("3737", ex.ToString());
    }

    [Fact]
    public void ToString_Redacted()
    {
        using var secret = MasterSecret.Generate();
        Assert.Equal("[redacted]", secret.ToString());
        Assert.DoesNotContain(Convert.ToBase64String(secret.Key), Encoding.ASCII.GetString(secret.ToJson()).Replace(Convert.ToBase64String(secret.Key), "", StringComparison.Ordinal));
    }
}
