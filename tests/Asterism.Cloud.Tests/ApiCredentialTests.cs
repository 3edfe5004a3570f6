namespace Asterism.Cloud.Tests;

public sealed class ApiCredentialTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("asterism-cred-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    [Fact]
    public void LoadOrCreate_NewFile_Mode0600AndStable()
    {
        var path = PathOf(ApiCredential.FileName);

        var created = ApiCredential.LoadOrCreate(path);
        var again = ApiCredential.LoadOrCreate(path);

        Assert.Equal(OwnerOnly.FileMode, File.GetUnixFileMode(path));
        Assert.Equal(created.Token, again.Token);
        Assert.Matches("^[0-9a-f]{64}$", created.Token);
        Assert.Equal("[redacted]", created.ToString());
    }

    [Fact]
    public void Load_GroupOrWorldReadable_RefusedNamingTheChmod()
    {
        var path = PathOf(ApiCredential.FileName);
        var credential = ApiCredential.LoadOrCreate(path);
        File.SetUnixFileMode(path, OwnerOnly.FileMode | UnixFileMode.OtherRead);

        var e = Assert.Throws<CloudConfigException>(() => ApiCredential.Load(path));

        Assert.Contains($"run: chmod 600 '{path}'", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(credential.Token, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("short")]
    [InlineData("0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef")]
    [InlineData("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef00")]
    public void Load_NotAToken_Refused(string content)
    {
        var path = PathOf("bad-token");
        OwnerOnly.WriteAllText(path, content);

        var e = Assert.Throws<CloudConfigException>(() => ApiCredential.Load(path));

        Assert.Contains("does not hold a token", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Verifier_ChecksBearerTokenOnly()
    {
        var credential = ApiCredential.Generate();
        var verifier = credential.Verifier();

        Assert.Equal(CredentialCheck.Valid, verifier.Check(credential.AuthorizationValue));
        Assert.Equal(CredentialCheck.Valid, verifier.Check("bearer " + credential.Token));
        Assert.Equal(CredentialCheck.Missing, verifier.Check(null));
        Assert.Equal(CredentialCheck.Missing, verifier.Check(""));
        Assert.Equal(CredentialCheck.Missing, verifier.Check("Bearer "));
        Assert.Equal(CredentialCheck.Missing, verifier.Check("Basic " + credential.Token));
        Assert.Equal(CredentialCheck.Missing, verifier.Check("Bearer " + new string('a', 1000)));
        Assert.Equal(CredentialCheck.Wrong, verifier.Check("Bearer " + ApiCredential.Generate().Token));
        Assert.Equal(CredentialCheck.Wrong, verifier.Check("Bearer " + credential.Token[..63]));
        Assert.Equal(CredentialCheck.Wrong, verifier.Check("Bearer " + Convert.ToHexString(credential.Hash()).ToLowerInvariant()));
    }

    [Fact]
    public void HashFile_NodeSideVerifier_AcceptsTokenButHoldsOnlyItsHash()
    {
        var credential = ApiCredential.Generate();
        var path = PathOf(ApiCredential.HashFileName);
        credential.WriteHashFile(path);

        var verifier = ApiCredentialVerifier.LoadHashFile(path, out var problem);

        Assert.Null(problem);
        Assert.Equal(OwnerOnly.FileMode, File.GetUnixFileMode(path));
        Assert.DoesNotContain(credential.Token, File.ReadAllText(path), StringComparison.Ordinal);
        Assert.Equal(CredentialCheck.Valid, verifier.Check(credential.AuthorizationValue));
        Assert.Equal(CredentialCheck.Wrong, verifier.Check("Bearer " + ApiCredential.Generate().Token));
    }

    [Fact]
    public void LoadHashFile_MissingMalformedOrOpen_RefusesEverything()
    {
        var credential = ApiCredential.Generate();
        var missing = ApiCredentialVerifier.LoadHashFile(PathOf("none"), out var why);
        Assert.Contains("does not exist", why, StringComparison.Ordinal);
        Assert.Equal(CredentialCheck.NotConfigured, missing.Check(credential.AuthorizationValue));

        var malformed = PathOf("malformed");
        OwnerOnly.WriteAllText(malformed, "zz");
        Assert.Equal(CredentialCheck.NotConfigured, ApiCredentialVerifier.LoadHashFile(malformed, out why).Check(credential.AuthorizationValue));
        Assert.Contains("SHA-256", why, StringComparison.Ordinal);

        var open = PathOf("open");
        credential.WriteHashFile(open);
        File.SetUnixFileMode(open, OwnerOnly.FileMode | UnixFileMode.OtherWrite);
        Assert.Equal(CredentialCheck.NotConfigured, ApiCredentialVerifier.LoadHashFile(open, out why).Check(credential.AuthorizationValue));
        Assert.Contains("chmod 600", why, StringComparison.Ordinal);
    }

    [Fact]
    public void OwnerOnly_CreateDirectory_TightensExisting()
    {
        var dir = PathOf("wide");
        Directory.CreateDirectory(dir);
        File.SetUnixFileMode(dir, OwnerOnly.DirectoryMode | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);

        OwnerOnly.CreateDirectory(dir);
        OwnerOnly.CreateDirectory(PathOf("new/child"));

        Assert.Equal(OwnerOnly.DirectoryMode, File.GetUnixFileMode(dir));
        Assert.Equal(OwnerOnly.DirectoryMode, File.GetUnixFileMode(PathOf("new")));
        Assert.Equal(OwnerOnly.DirectoryMode, File.GetUnixFileMode(PathOf("new/child")));
    }
}
