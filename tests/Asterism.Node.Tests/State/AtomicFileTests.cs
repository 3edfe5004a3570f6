using Asterism.Node.State;

namespace Asterism.Node.Tests.State;

public sealed class AtomicFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("asterism-atomic-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Write_NewFile_ContentAnd0600_NoTemporaryFileLeft()
    {
        var path = Path.Combine(_dir, "value");

        AtomicFile.Write(path, "hello"u8);

        Assert.Equal("hello"u8.ToArray(), File.ReadAllBytes(path));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        Assert.Equal(["value"], Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public void Write_ExistingFile_ReplacedByANewInode_OpenReaderKeepsTheOldContent()
    {
        // rename(2) swaps the directory entry: a reader that opened the old file sees the old bytes whole, never a
        // mix, which is what a crash between write and rename leaves too.
        var path = Path.Combine(_dir, "value");
        AtomicFile.Write(path, "old content"u8);
        using var reader = File.OpenRead(path);

        AtomicFile.Write(path, "new"u8);

        Assert.Equal("new"u8.ToArray(), File.ReadAllBytes(path));
        using var text = new StreamReader(reader);
        Assert.Equal("old content", text.ReadToEnd());
    }

    [Fact]
    public void Write_WorldReadableOldFile_NewFileIs0600()
    {
        var path = Path.Combine(_dir, "value");
        File.WriteAllText(path, "x");
        File.SetUnixFileMode(path, (UnixFileMode)0b110_100_100);

        AtomicFile.Write(path, "secret"u8);

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
    }

    [Fact]
    public void Write_DirectoryMissing_ThrowsAndLeavesNothing()
    {
        Assert.Throws<DirectoryNotFoundException>(() => AtomicFile.Write(Path.Combine(_dir, "missing", "value"), "x"u8));
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void Write_TargetIsADirectory_ThrowsAndRemovesItsTemporaryFile()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "value"));

        Assert.ThrowsAny<IOException>(() => AtomicFile.Write(Path.Combine(_dir, "value"), "x"u8));

        Assert.Equal(["value"], Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public void CreateDirectory_Nested_Each0700()
    {
        var nested = Path.Combine(_dir, "a", "b", "c");

        AtomicFile.CreateDirectory(nested);

        foreach (var d in new[] { Path.Combine(_dir, "a"), Path.Combine(_dir, "a", "b"), nested })
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(d));
        }
    }

    [Fact]
    public void RemoveLeftovers_RemovesOnlyTemporaryFiles()
    {
        File.WriteAllText(Path.Combine(_dir, AtomicFile.TempPrefix + "0123-value"), "half");
        AtomicFile.Write(Path.Combine(_dir, "value"), "whole"u8);

        Assert.Equal(1, AtomicFile.RemoveLeftovers(_dir));

        Assert.Equal(["value"], Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName));
        Assert.Equal(0, AtomicFile.RemoveLeftovers(Path.Combine(_dir, "missing")));
    }

    [Fact]
    public void SyncDirectory_NotADirectory_Throws()
    {
        var file = Path.Combine(_dir, "file");
        File.WriteAllText(file, "x");

        Assert.Throws<IOException>(() => AtomicFile.SyncDirectory(file));
    }
}
