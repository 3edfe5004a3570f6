using System.Security.Cryptography;
using System.Text.Json;

namespace Asterism.Disk.Tests;

public sealed class Luks2InteropTests
{
    private const long ImageSize = 20L * 1024 * 1024;

    private static string FormatOurs(TempDir dir, out byte[] passphrase)
    {
        passphrase = RandomNumberGenerator.GetBytes(32);
        var img = dir.File("ours.img");
        using var device = FileBlockDevice.Create(img, ImageSize);
        using var image = Luks2Image.Format(device, ownsDevice: false, passphrase);
        return img;
    }

    [Fact]
    public void Format_Ours_CryptsetupOpensAndDumpsSameVolumeKey()
    {
        using var dir = new TempDir();
        var img = FormatOurs(dir, out var pass);
        File.WriteAllBytes(dir.File("key"), pass);
        Cryptsetup.Ok("open", "--test-passphrase", "--key-file", dir.File("key"), img);
        var dump = Cryptsetup.Ok("luksDump", img);
        Assert.Contains("Version:       \t2", dump);
        Assert.Contains("aes-xts-plain64", dump);
        var json = Cryptsetup.Ok("luksDump", "--dump-json-metadata", img);
        using var doc = JsonDocument.Parse(json);
        Assert.Equal("16777216", doc.RootElement.GetProperty("segments").GetProperty("0").GetProperty("offset").GetString());
        Assert.Equal("32768", doc.RootElement.GetProperty("keyslots").GetProperty("0").GetProperty("area").GetProperty("offset").GetString());
        Assert.Equal("258048", doc.RootElement.GetProperty("keyslots").GetProperty("0").GetProperty("area").GetProperty("size").GetString());

        Cryptsetup.Ok("luksDump", "--dump-volume-key", "--volume-key-file", dir.File("vk"), "--key-file", dir.File("key"), "--batch-mode", img);
        var dumped = File.ReadAllBytes(dir.File("vk"));
        using var image = Luks2Image.Open(img, writable: false);
        Assert.Equal(KeyCheckResult.Accepted, image.Unlock(pass, out var vk));
        using (vk)
        {
            Assert.True(vk!.Matches(dumped));
        }
        var (code, _, _) = Cryptsetup.Run("open", "--test-passphrase", "--key-file", dir.File("vk"), img);
        Assert.Equal(2, code);
        Assert.Equal(ImageSize, new FileInfo(img).Length);
        var uuid = Cryptsetup.Ok("luksUUID", img).Trim();
        Assert.Equal(image.Header.Uuid, uuid);
        Assert.Equal(uuid.ToLowerInvariant(), uuid);
    }

    [Fact]
    public void Open_CryptsetupPbkdf2Image_UnlocksWithOurs()
    {
        using var dir = new TempDir();
        var img = dir.File("cs.img");
        using (var f = File.Create(img))
        {
            f.SetLength(ImageSize);
        }
        var pass = RandomNumberGenerator.GetBytes(32);
        File.WriteAllBytes(dir.File("key"), pass);
        Cryptsetup.Ok("luksFormat", "--type", "luks2", "--cipher", "aes-xts-plain64", "--key-size", "512", "--sector-size", "4096",
            "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", dir.File("key"), "--batch-mode", img);
        Cryptsetup.Ok("luksDump", "--dump-volume-key", "--volume-key-file", dir.File("vk"), "--key-file", dir.File("key"), "--batch-mode", img);
        using var image = Luks2Image.Open(img, writable: true);
        Assert.Equal(KeyCheckResult.Accepted, image.Unlock(pass, out var vk));
        using (vk)
        {
            Assert.True(vk!.Matches(File.ReadAllBytes(dir.File("vk"))));
        }
        Assert.Equal(KeyCheckResult.Rejected, image.CheckKey(RandomNumberGenerator.GetBytes(32)));
    }
}
