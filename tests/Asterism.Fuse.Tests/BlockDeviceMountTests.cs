using Asterism.Disk;

namespace Asterism.Fuse.Tests;

public sealed class BlockDeviceMountTests
{
    [Fact]
    public void Mount_MemoryDevice_ReadsBackWrites()
    {
        var dir = Directory.CreateTempSubdirectory("asterism-fuse-");
        try
        {
            using var device = new MemoryBlockDevice(1 << 20);
            var fs = new BlockDeviceFileSystem(device);
            using (var mount = FuseMount.Mount(dir.FullName, fs))
            {
                var file = Path.Combine(dir.FullName, "disk");
                Assert.Equal(1 << 20, new FileInfo(file).Length);
                var data = new byte[10000];
                Random.Shared.NextBytes(data);
                using (var h = File.OpenHandle(file, FileMode.Open, FileAccess.ReadWrite))
                {
                    RandomAccess.Write(h, data, 12345);
                    RandomAccess.FlushToDisk(h);
                }
                var back = new byte[10000];
                device.Read(12345, back);
                Assert.Equal(data, back);
                Assert.Equal(["disk"], Directory.GetFileSystemEntries(dir.FullName).Select(Path.GetFileName));
                Assert.True(fs.FsyncCount > 0);
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
