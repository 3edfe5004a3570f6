using System.CommandLine;
using Asterism.Cloud;
using Asterism.Config;

namespace Asterism.Cli.Commands;

/// <summary><c>asterism config fetch-measurements</c>: computes the expected PCR values of the current node build.</summary>
public static class FetchMeasurementsCommand
{
    /// <summary>
    /// Expected values: PCR 4 (node binary) and 9 (boot arguments) as the provider's measured boot will extend them,
    /// and PCR 15 = zero (no keys yet in this boot), all enforced.
    /// </summary>
    public static SortedDictionary<int, MeasurementEntry> Expected(CloudSpec spec)
    {
        var events = MeasuredBoot.ComputeEvents(spec);
        var pcrs = MeasuredBoot.ExpectedPcrs(events);
        var result = new SortedDictionary<int, MeasurementEntry>();
        foreach (var (index, value) in pcrs)
        {
            result[index] = new MeasurementEntry { Expected = Convert.ToHexStringLower(value), WarnOnly = false };
        }
        result[15] = new MeasurementEntry { Expected = new string('0', 64), WarnOnly = false };
        return result;
    }

    public static Command Create(GlobalOptions global)
    {
        var fetch = new Command("fetch-measurements", "Compute the expected measurements of the current node build and write them to asterism-conf.yaml");
        fetch.SetAction(result =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var workspace = new Workspace(global.WorkspaceOf(result));
            workspace.RequireCluster();
            var config = workspace.LoadConfig();
            var spec = File.Exists(workspace.Cloud.SpecPath) ? CloudSpec.Load(workspace.Cloud.SpecPath) : throw new CliError("the local provider's spec.json is missing");
            spec = spec with { NodeCommand = NodeBinary.Command(), NodeArgs = CreateCommand.LocalNodeArgs };
            config.Attestation.Measurements = Expected(spec);
            config.Save(workspace.ConfigPath);
            foreach (var (index, entry) in config.Attestation.Measurements)
            {
                stdout.WriteLine($"  {index,2}: {entry.Expected}{(entry.WarnOnly ? " (warn only)" : "")}");
            }
            stdout.WriteLine($"Wrote measurements for the {config.Attestation.Variant} variant to {workspace.ConfigPath}");
            if (config.Attestation.Variant == "simulated")
            {
                result.InvocationConfiguration.Error.WriteLine("Warning: attestation variant \"simulated\" is software-only: for local clusters and tests, never a security boundary");
            }
            return 0;
        });
        var command = new Command("config", "Work with asterism-conf.yaml") { fetch };
        return command;
    }
}
