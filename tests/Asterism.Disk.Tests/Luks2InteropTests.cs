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

public sealed class Luks2InteropMoreTests
{
    private const long ImageSize = 20L * 1024 * 1024;

    private static string CryptsetupFormat(TempDir dir, byte[] pass, params string[] pbkdf)
    {
        var img = dir.File("cs.img");
        using (var f = File.Create(img))
        {
            f.SetLength(ImageSize);
        }
        File.WriteAllBytes(dir.File("key"), pass);
        Cryptsetup.Ok(["luksFormat", "--type", "luks2", "--cipher", "aes-xts-plain64", "--key-size", "512", "--sector-size", "4096",
            .. pbkdf, "--key-file", dir.File("key"), "--batch-mode", img]);
        return img;
    }

    [Fact]
    public void Open_CryptsetupDefaultArgon2id_Unlocks()
    {
        using var dir = new TempDir();
        var pass = RandomNumberGenerator.GetBytes(32);
        var img = CryptsetupFormat(dir, pass);
        using var image = Luks2Image.Open(img, writable: false);
        var kdf = image.Header.Metadata.Keyslots[0].Kdf;
        Assert.Equal("argon2id", kdf.Type);
        Assert.Equal(KeyCheckResult.Accepted, image.CheckKey(pass));
    }

    [Fact]
    public void Open_CryptsetupArgon2i_UnlocksAndRejectsWrongKey()
    {
        using var dir = new TempDir();
        var pass = RandomNumberGenerator.GetBytes(32);
        var img = CryptsetupFormat(dir, pass, "--pbkdf", "argon2i", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "2");
        using var image = Luks2Image.Open(img, writable: false);
        Assert.Equal(("argon2i", 4, 32768, 2), (image.Header.Metadata.Keyslots[0].Kdf.Type, image.Header.Metadata.Keyslots[0].Kdf.Iterations,
            image.Header.Metadata.Keyslots[0].Kdf.MemoryKiB, image.Header.Metadata.Keyslots[0].Kdf.Parallelism));
        Assert.Equal(KeyCheckResult.Accepted, image.CheckKey(pass));
        Assert.Equal(KeyCheckResult.Rejected, image.CheckKey("wrong"u8));
    }

    [Fact]
    public void Tokens_ImportedByCryptsetup_SurviveOurRewrites_AndOursExport()
    {
        using var dir = new TempDir();
        var pass = RandomNumberGenerator.GetBytes(32);
        var img = dir.File("ours.img");
        using (var disk = StateDisk.Format(img, ImageSize, pass))
        {
            Assert.False(disk.IsInitialized);
        }
        var foreign = "{\"type\":\"some-tool\",\"keyslots\":[\"0\"],\"nested\":{\"list\":[1,2,{\"x\":\"y\"}]},\"flag\":true}";
        File.WriteAllText(dir.File("t1.json"), foreign);
        Cryptsetup.Ok("token", "import", "--json-file", dir.File("t1.json"), "--token-id", "1", img);
        var exportedBefore = Cryptsetup.Ok("token", "export", "--token-id", "1", img);

        var newPass = RandomNumberGenerator.GetBytes(32);
        using (var disk = StateDisk.Open(img))
        {
            using var doc = System.Text.Json.JsonDocument.Parse(disk.Header.Metadata.Tokens[1]);
            Assert.Equal("some-tool", doc.RootElement.GetProperty("type").GetString());
            disk.SetInitialized(true);
            Assert.Equal(KeyCheckResult.Accepted, disk.ChangePassphrase(pass, newPass));
            Assert.Equal(KeyCheckResult.Rejected, disk.ChangePassphrase(pass, newPass));
        }
        Assert.Equal(exportedBefore, Cryptsetup.Ok("token", "export", "--token-id", "1", img));
        var ours = Cryptsetup.Ok("token", "export", "--token-id", "0", img).Trim();
        using (var doc = System.Text.Json.JsonDocument.Parse(ours))
        {
            Assert.Equal(["type", "keyslots", "diskIsInitialized"], doc.RootElement.EnumerateObject().Select(p => p.Name));
            Assert.True(doc.RootElement.GetProperty("diskIsInitialized").GetBoolean());
            Assert.Equal("asterism-state-disk", doc.RootElement.GetProperty("type").GetString());
        }
        File.WriteAllBytes(dir.File("new"), newPass);
        File.WriteAllBytes(dir.File("old"), pass);
        Cryptsetup.Ok("open", "--test-passphrase", "--key-file", dir.File("new"), img);
        Assert.Equal(2, Cryptsetup.Run("open", "--test-passphrase", "--key-file", dir.File("old"), img).ExitCode);
        Assert.Contains("Keyslots:", Cryptsetup.Ok("luksDump", img));
        Assert.Equal(StateDiskKind.Initialized, StateDisk.Probe(img).Kind);
        Assert.Throws<InvalidOperationException>(() => StateDisk.Format(img, ImageSize, pass));
        Assert.Equal(StateDiskKind.Initialized, StateDisk.Probe(img).Kind);

        // A token cryptsetup writes as token 0 is read back by ours.
        File.WriteAllText(dir.File("t0.json"), StateDiskToken.Serialize(false));
        Cryptsetup.Ok("token", "import", "--json-file", dir.File("t0.json"), "--token-id", "0", "--token-replace", img);
        Assert.Equal(StateDiskKind.Uninitialized, StateDisk.Probe(img).Kind);
    }

    [Fact]
    public void InterruptedUpdate_MixedHeaderCopies_CryptsetupPicksSameCopyAsOurs()
    {
        using var dir = new TempDir();
        var oldPass = RandomNumberGenerator.GetBytes(32);
        var newPass = RandomNumberGenerator.GetBytes(32);
        var img = dir.File("ours.img");
        using (var device = FileBlockDevice.Create(img, ImageSize))
        using (Luks2Image.Format(device, ownsDevice: false, oldPass))
        {
        }
        var before = File.ReadAllBytes(img);
        using (var image = Luks2Image.Open(img, writable: true))
        {
            Assert.Equal(KeyCheckResult.Accepted, image.ChangePassphrase(0, oldPass, newPass));
        }
        var after = File.ReadAllBytes(img);
        File.WriteAllBytes(dir.File("new"), newPass);
        File.WriteAllBytes(dir.File("old"), oldPass);
        foreach (var staleCopy in new[] { 0, Luks2Header.HeaderSize })
        {
            // A cut between the two header writes, without the final wipe of the old area.
            var mixed = (byte[])after.Clone();
            before.AsSpan(staleCopy, Luks2Header.HeaderSize).CopyTo(mixed.AsSpan(staleCopy));
            before.AsSpan(32768, (int)Luks2Image.KeyslotAreaSize).CopyTo(mixed.AsSpan(32768));
            var path = dir.File($"mixed{staleCopy}.img");
            File.WriteAllBytes(path, mixed);
            using (var image = Luks2Image.Open(path, writable: false))
            {
                Assert.Equal(KeyCheckResult.Accepted, image.CheckKey(newPass));
                Assert.Equal(KeyCheckResult.Rejected, image.CheckKey(oldPass));
            }
            Cryptsetup.Ok("open", "--test-passphrase", "--key-file", dir.File("new"), path);
            Assert.Equal(2, Cryptsetup.Run("open", "--test-passphrase", "--key-file", dir.File("old"), path).ExitCode);
        }
    }

    [Fact]
    public void AddRemoveKeyslot_OurRewrites_CryptsetupAgrees()
    {
        using var dir = new TempDir();
        var pass = RandomNumberGenerator.GetBytes(32);
        var second = RandomNumberGenerator.GetBytes(32);
        var img = dir.File("ours.img");
        using (var device = FileBlockDevice.Create(img, ImageSize))
        using (var image = Luks2Image.Format(device, ownsDevice: false, pass))
        {
            Assert.Equal(KeyCheckResult.Accepted, image.Unlock(pass, out var vk));
            using (vk)
            {
                Assert.Equal(1, image.AddKeyslot(vk!, second));
            }
            Assert.Equal(290816, image.Header.Metadata.Keyslots[1].AreaOffset);
        }
        File.WriteAllBytes(dir.File("k2"), second);
        Cryptsetup.Ok("open", "--test-passphrase", "--key-slot", "1", "--key-file", dir.File("k2"), img);
        using (var image = Luks2Image.Open(img, writable: true))
        {
            image.RemoveKeyslot(0);
            Assert.Throws<InvalidOperationException>(() => image.RemoveKeyslot(1));
        }
        File.WriteAllBytes(dir.File("k1"), pass);
        Assert.Equal(2, Cryptsetup.Run("open", "--test-passphrase", "--key-file", dir.File("k1"), img).ExitCode);
        Cryptsetup.Ok("open", "--test-passphrase", "--key-file", dir.File("k2"), img);
    }

    [Fact]
    public void EncryptedVolume_ReadsCryptsetupCiphertext_AndCryptsetupDecryptsOurs()
    {
        using var dir = new TempDir();
        var pass = RandomNumberGenerator.GetBytes(32);
        File.WriteAllBytes(dir.File("key"), pass);
        var plain = RandomNumberGenerator.GetBytes(1024 * 1024);
        File.WriteAllBytes(dir.File("data"), plain);
        string[] encrypt = ["reencrypt", "--encrypt", "--type", "luks2", "--header", dir.File("hdr"), "--cipher", "aes-xts-plain64", "--key-size", "512",
            "--sector-size", "4096", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", dir.File("key"), "--batch-mode", dir.File("data")];
        Cryptsetup.Ok(encrypt);
        Cryptsetup.Ok("luksDump", "--dump-volume-key", "--volume-key-file", dir.File("vk"), "--key-file", dir.File("key"), "--batch-mode", dir.File("hdr"));
        using var vk = VolumeKey.FromBytes(File.ReadAllBytes(dir.File("vk")));
        Assert.NotEqual(plain, File.ReadAllBytes(dir.File("data")));

        // cryptsetup's ciphertext through ours.
        using (var device = FileBlockDevice.Open(dir.File("data"), writable: true))
        using (var volume = new EncryptedVolume(device, 0, vk))
        {
            var read = new byte[plain.Length];
            volume.ReadSectors(0, read);
            Assert.Equal(plain, read);

            // Our ciphertext through cryptsetup: overwrite with new plaintext, let cryptsetup decrypt in place.
            var mine = RandomNumberGenerator.GetBytes(plain.Length);
            volume.WriteSectors(0, mine.AsSpan(0, 512 * 1024));
            volume.WriteSectors(128, mine.AsSpan(512 * 1024));
            volume.Flush();
            plain = mine;
        }
        Cryptsetup.Ok("reencrypt", "--decrypt", "--force-offline-reencrypt", "--header", dir.File("hdr"), "--key-file", dir.File("key"), "--batch-mode", dir.File("data"));
        Assert.Equal(plain, File.ReadAllBytes(dir.File("data")));
    }
}
