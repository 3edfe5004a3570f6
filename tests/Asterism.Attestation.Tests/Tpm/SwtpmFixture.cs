using Asterism.Attestation.Tpm;
using Asterism.Tpm;

namespace Asterism.Attestation.Tests.Tpm;

/// <summary>
/// One swtpm (started by this fixture on free 127.0.0.1 ports, stopped cleanly by PID at the end) with an
/// attestation session on it, shared by the tests of a class. Fails with the package names when swtpm is missing.
/// </summary>
public sealed class SwtpmFixture : IAsyncLifetime
{
    private string _dir = "";

    public SwtpmProcess Swtpm { get; private set; } = null!;

    public TpmAttestationSession Session { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        _dir = Directory.CreateTempSubdirectory("asterism-tpm-attestation-").FullName;
        Swtpm = await SwtpmProcess.StartAsync(_dir, CancellationToken.None);
        Session = await TpmAttestationSession.ConnectSwtpmAsync(Swtpm.SocketPath, default, null, CancellationToken.None);
        await Session.Pcrs.MeasureEventAsync(4, "asterism-node binary"u8.ToArray(), CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        if (Session is not null)
        {
            await Session.DisposeAsync();
        }
        if (Swtpm is not null)
        {
            await Swtpm.DisposeAsync();
        }
        Directory.Delete(_dir, recursive: true);
    }
}
