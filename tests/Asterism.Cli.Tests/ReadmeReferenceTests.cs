namespace Asterism.Cli.Tests;

/// <summary>READMEs that cannot drift: every path, file and code name they cite exists (rules in <see cref="ReadmeReferences"/>).</summary>
public sealed class ReadmeReferenceTests
{
    private static readonly Lazy<ReadmeReferences> Repository = new(() => ReadmeReferences.Load(ReadmeReferences.FindRoot()));

    [Fact]
    public void Readmes_EveryNamedPathFileAndCodeName_Exists()
    {
        var readmes = Repository.Value.Readmes().ToList();
        Assert.True(readmes.Count >= 15, $"found only {readmes.Count} READMEs");
        var problems = readmes.SelectMany(r => Repository.Value.Check(r, File.ReadAllText(r))).ToList();
        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }

    [Fact]
    public void Check_DanglingNames_EachReported()
    {
        var root = ReadmeReferences.FindRoot();
        var readme = Path.Combine(root, "src", "Asterism.Disk", "README.md");
        const string text = """
            `StateDisk.TryUnlock(key)` and `Luks2Image` exist; `StateDisk.NoSuchMember` and `NoSuchType` do not.
            Tests in `tests/Asterism.Nothing.Tests`, see ../shared/design/ARCHITECTURE.md and [design](../../../design.md),
            the file `Gone.cs`, the folder `Missing/`. External: `SslStream`, not checked: `TPM2_Startup`, `SSL`.
            ```
            dotnet test tests/Asterism.Disk.Tests
            ```
            """;
        var problems = ReadmeReferences.Load(root).Check(readme, text);
        Assert.Equal(
        [
            "src/Asterism.Disk/README.md: path `tests/Asterism.Nothing.Tests` does not exist",
            "src/Asterism.Disk/README.md: Markdown file `../shared/design/ARCHITECTURE.md` does not exist",
            "src/Asterism.Disk/README.md: Markdown file `../../../design.md` does not exist",
            "src/Asterism.Disk/README.md: link target `../../../design.md` does not exist",
            "src/Asterism.Disk/README.md: code name `NoSuchMember` does not exist",
            "src/Asterism.Disk/README.md: code name `NoSuchType` does not exist",
            "src/Asterism.Disk/README.md: file `Gone.cs` does not exist",
            "src/Asterism.Disk/README.md: path `Missing/` does not exist",
        ], problems);
    }

    [Theory]
    [InlineData("StateDisk", true)]
    [InlineData("Recover_TamperedNodeRecord_Refused", true)]
    [InlineData("SSL", false)]
    [InlineData("TPM2_Startup", false)]
    [InlineData("byte", false)]
    public void LooksLikeDotNetName_Examples(string word, bool expected) =>
        Assert.Equal(expected, ReadmeReferences.LooksLikeDotNetName(word));
}
