using System.CommandLine;
using Asterism.Secrets;

namespace Asterism.Cli;

/// <summary>
/// The options that make shares (<c>secret split</c>, <c>init --shares</c>): --shares, --threshold, --recipient,
/// --out, --no-encrypt. Their combination is checked while parsing, so a bad one is a usage error (exit 2) before any
/// file is read or written.
/// </summary>
public sealed class ShareOptions
{
    public const string DefaultOutDirectory = "asterism-shares";

    public Option<int?> Shares { get; } = new("--shares") { Description = "Number of shares N (2..255), one per holder" };

    public Option<int?> Threshold { get; } = new("--threshold") { Description = "Shares K needed to rebuild the master secret (2..N)" };

    public Option<string[]> Recipients { get; } = new("--recipient", "-r")
    {
        Description = "A holder's age recipient (age1…): give one per share (share i to the i-th) or one for all",
        Arity = ArgumentArity.OneOrMore,
    };

    public Option<string?> Out { get; } = new("--out") { Description = $"Directory for the share files (default: {DefaultOutDirectory} in the workspace; made 0700)" };

    public Option<bool> NoEncrypt { get; } = new("--no-encrypt") { Description = "Write the shares unencrypted (for tests and demos only): needed to split without --recipient" };

    /// <summary>Adds the options to <paramref name="command"/> with a validator of their combination; <paramref name="required"/> makes --shares mandatory.</summary>
    public void AddTo(Command command, bool required)
    {
        command.Options.Add(Shares);
        command.Options.Add(Threshold);
        command.Options.Add(Recipients);
        command.Options.Add(Out);
        command.Options.Add(NoEncrypt);
        command.Validators.Add(result =>
        {
            try
            {
                Check(result, required);
            }
            catch (CliError ex)
            {
                result.AddError(ex.Message);
            }
        });
    }

    private void Check(System.CommandLine.Parsing.CommandResult result, bool required)
    {
        var shares = result.GetValue(Shares);
        var threshold = result.GetValue(Threshold);
        var recipients = result.GetValue(Recipients) ?? [];
        var noEncrypt = result.GetValue(NoEncrypt);
        if (shares is null)
        {
            if (required || threshold is not null || recipients.Length > 0 || noEncrypt || result.GetValue(Out) is not null)
            {
                throw new CliError(required ? "--shares N is required" : "--threshold, --recipient, --out and --no-encrypt need --shares N");
            }
            return;
        }
        if (threshold is null)
        {
            throw new CliError("--threshold K is required with --shares");
        }
        try
        {
            SecretShares.ValidateCounts(threshold.Value, shares.Value);
        }
        catch (ShareException ex)
        {
            throw new CliError(ex.Message);
        }
        ParseRecipients(recipients, shares.Value, noEncrypt);
    }

    /// <summary>One recipient per share: the i-th for share i, or the only one for all; null with --no-encrypt.</summary>
    public static IReadOnlyList<AgeRecipient>? ParseRecipients(string[] texts, int count, bool noEncrypt)
    {
        if (noEncrypt)
        {
            return texts.Length == 0 ? null : throw new CliError("--no-encrypt and --recipient exclude each other", 2);
        }
        if (texts.Length == 0)
        {
            throw new CliError("give each holder's age recipient with --recipient age1… (or --no-encrypt for an unprotected test split)", 2);
        }
        if (texts.Length != 1 && texts.Length != count)
        {
            throw new CliError($"{texts.Length} recipients for {count} shares: give one per share or one for all", 2);
        }
        var parsed = new List<AgeRecipient>();
        foreach (var text in texts)
        {
            try
            {
                parsed.Add(AgeRecipient.Parse(text));
            }
            catch (AgeException ex)
            {
                throw new CliError("--recipient " + ex.Message, 2);
            }
        }
        return [.. Enumerable.Range(0, count).Select(i => parsed[texts.Length == 1 ? 0 : i])];
    }

    /// <summary>What the parsed options ask for (null without --shares).</summary>
    public ShareRequest? RequestOf(ParseResult result, Workspace workspace)
    {
        if (result.GetValue(Shares) is not { } count)
        {
            return null;
        }
        var threshold = result.GetValue(Threshold)!.Value;
        var recipients = ParseRecipients(result.GetValue(Recipients) ?? [], count, result.GetValue(NoEncrypt));
        var outDir = result.GetValue(Out) is { } given ? Path.GetFullPath(given) : Path.Combine(workspace.Directory, DefaultOutDirectory);
        return new ShareRequest(threshold, count, recipients, outDir);
    }
}

/// <summary>K of N shares, encrypted to these recipients (null: unencrypted), written into this directory.</summary>
public sealed record ShareRequest(int Threshold, int Count, IReadOnlyList<AgeRecipient>? Recipients, string OutDirectory);
