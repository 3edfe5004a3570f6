using System.Net;
using Asterism.ControlPlane;

// A stand-in for the node: starts one etcd member as its child, prints "etcd PID", then waits until it is killed.
// The tests SIGKILL this process and check that etcd goes with it.
if (args.Length != 6)
{
    Console.Error.WriteLine("usage: asterism-controlplane-testhost NAME ADDRESS DATA_DIR CERT KEY CA");
    return 2;
}
var options = new EtcdMemberOptions
{
    Name = args[0],
    Address = IPAddress.Parse(args[1]),
    DataDirectory = args[2],
    Tls = new TlsFiles(args[3], args[4], args[5]),
};
var member = await EtcdMember.StartAsync(options);
// Let the thread pool churn: the parent-death signal must not follow a thread-pool thread that retires.
await Task.WhenAll(Enumerable.Range(0, 64).Select(_ => Task.Run(() => Thread.Sleep(10))));
Console.WriteLine($"etcd {member.ProcessId}");
Console.Out.Flush();
await member.Exited;
return 0;
