namespace Asterism.Disk.Tests;

/// <summary>
/// Makes a file read-only for the duration: mode 0400, and as root (who ignores modes) also the immutable attribute
/// (<c>chattr +i</c>, ext4), so opening it for writing fails even for root.
/// </summary>
internal sealed class ReadOnlyFile : IDisposable
{
    private readonly string _path;
    private readonly bool _immutable;

    public ReadOnlyFile(string path)
    {
        _path = path;
        File.SetUnixFileMode(path, UnixFileMode.UserRead);
        _immutable = Environment.IsPrivilegedProcess && Chattr("+i");
        if (Environment.IsPrivilegedProcess && !_immutable)
        {
            throw new InvalidOperationException("running as root and chattr +i failed: cannot make a read-only file for this test");
        }
    }

    public void Dispose()
    {
        if (_immutable)
        {
            Chattr("-i");
        }
        File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    private bool Chattr(string flag)
    {
        try
        {
            using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("chattr", [flag, _path]) { RedirectStandardError = true })!;
            p.StandardError.ReadToEnd();
            p.WaitForExit();
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }
}
