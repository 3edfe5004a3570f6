using Asterism.Fuse;
using Asterism.StateFs;

// A separate process serving a LUKS2 image through FUSE, so tests can run it as another user (setpriv) and kill it
// with SIGKILL. Prints "ready ..." once mounted; unmounts and exits when stdin closes.
//   block IMAGE PASSPHRASE_FILE MOUNT_DIR
//   state IMAGE PASSPHRASE_FILE RUNTIME_DIR STATE_DIR
if (args.Length < 4)
{
    Console.Error.WriteLine("usage: block IMAGE PASSFILE MOUNT | state IMAGE PASSFILE RUNTIME STATE");
    return 2;
}
var passphrase = File.ReadAllBytes(args[2]);
if (args[0] == "block")
{
    using var device = Luks2PayloadDevice.Open(args[1], passphrase);
    if (device is null)
    {
        Console.Error.WriteLine("wrong key");
        return 3;
    }
    using var mount = FuseMount.Mount(args[3], new BlockDeviceFileSystem(device));
    Console.WriteLine($"ready {Path.Combine(mount.MountPoint, "disk")}");
    Console.Out.Flush();
    await Console.In.ReadToEndAsync();
    return 0;
}
if (args[0] == "state" && args.Length >= 5)
{
    var fs = new FuseExt4StateFilesystem(Environment.IsPrivilegedProcess ? Ext4Driver.LoopDevice : Ext4Driver.Fuse2fs);
    await using var mount = await fs.MountAsync(
        new StateMountRequest { ImagePath = args[1], RuntimeDirectory = args[3], MountPoint = args[4], FormatIfNoFilesystem = true },
        passphrase, CancellationToken.None);
    Console.WriteLine($"ready {mount.BlockPath}");
    Console.Out.Flush();
    await Console.In.ReadToEndAsync();
    return 0;
}
Console.Error.WriteLine("unknown mode");
return 2;
