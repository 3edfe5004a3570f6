using System.Text;

namespace Asterism.StateFs;

/// <summary>One line of /proc/self/mountinfo.</summary>
/// <param name="MountPoint">Where it is mounted (unescaped).</param>
/// <param name="FileSystemType">e.g. ext4, fuse.asterism, fuse.fuse2fs.</param>
/// <param name="Source">The mount source (e.g. /dev/loop3, asterism).</param>
/// <param name="SuperOptions">Per-superblock options (e.g. user_id=0,group_id=0).</param>
/// <param name="Device">The filesystem's device number as mountinfo gives it, <c>major:minor</c> (e.g. 0:52).</param>
public sealed record MountEntry(string MountPoint, string FileSystemType, string Source, string SuperOptions, string Device = "");

/// <summary>Reads the mount table and the loop devices (the cleanup path's view of what is left).</summary>
public static class MountTable
{
    /// <summary>Mounts of this mount namespace.</summary>
    public static IReadOnlyList<MountEntry> Read()
    {
        var list = new List<MountEntry>();
        foreach (var line in File.ReadAllLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            var dash = Array.IndexOf(fields, "-");
            if (dash < 6 || fields.Length < dash + 4)
            {
                continue;
            }
            list.Add(new MountEntry(Unescape(fields[4]), fields[dash + 1], Unescape(fields[dash + 2]), fields[dash + 3], fields[2]));
        }
        return list;
    }

    /// <summary>Mounts at or below <paramref name="directory"/>, deepest (last mounted) first.</summary>
    public static IReadOnlyList<MountEntry> Under(string directory)
    {
        var root = Path.GetFullPath(directory).TrimEnd('/');
        return Read()
            .Where(m => m.MountPoint == root || m.MountPoint.StartsWith(root + "/", StringComparison.Ordinal))
            .Reverse()
            .ToList();
    }

    /// <summary>Loop devices (name, backing file) from <c>losetup --list</c>; empty when there are none.</summary>
    public static async Task<IReadOnlyList<(string Device, string BackingFile)>> LoopDevicesAsync(CancellationToken cancellationToken)
    {
        var r = await CommandRunner.RunAsync("losetup", ["--list", "--noheadings", "--raw", "--output", "NAME,BACK-FILE"], default, cancellationToken);
        if (r.ExitCode != 0)
        {
            return [];
        }
        var list = new List<(string, string)>();
        foreach (var line in r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            if (space > 0)
            {
                // losetup appends " (deleted)" when the backing file went away; raw output escapes spaces as \x20.
                var back = line[(space + 1)..].Replace(" (deleted)", string.Empty, StringComparison.Ordinal).Replace("\\x20", " ", StringComparison.Ordinal);
                list.Add((line[..space], back));
            }
        }
        return list;
    }

    private static string Unescape(string s)
    {
        if (!s.Contains('\\', StringComparison.Ordinal))
        {
            return s;
        }
        var b = new StringBuilder(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && i + 3 < s.Length && IsOctal(s[i + 1]) && IsOctal(s[i + 2]) && IsOctal(s[i + 3]))
            {
                b.Append((char)(((s[i + 1] - '0') * 64) + ((s[i + 2] - '0') * 8) + (s[i + 3] - '0')));
                i += 3;
            }
            else
            {
                b.Append(s[i]);
            }
        }
        return b.ToString();
    }

    private static bool IsOctal(char c) => c is >= '0' and <= '7';
}
