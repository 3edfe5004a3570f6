using System.Reflection;
using BenchmarkDotNet.Running;

namespace Asterism.Benchmarks;

/// <summary>
/// Entry point: `macro NAME [args]` runs one macro benchmark (a class implementing <see cref="IMacroBenchmark"/>),
/// `macro list` lists them; anything else goes to BenchmarkDotNet's switcher.
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "macro")
        {
            var all = Assembly.GetExecutingAssembly().GetTypes()
                .Where(t => typeof(IMacroBenchmark).IsAssignableFrom(t) && t is { IsAbstract: false, IsInterface: false })
                .Select(t => (IMacroBenchmark)Activator.CreateInstance(t)!)
                .OrderBy(b => b.Name, StringComparer.Ordinal)
                .ToList();
            if (args.Length < 2 || args[1] == "list")
            {
                foreach (var b in all)
                {
                    Console.WriteLine($"{b.Name,-20} {b.Description}");
                }
                return args.Length < 2 ? 2 : 0;
            }
            var chosen = all.FirstOrDefault(b => b.Name == args[1]);
            if (chosen is null)
            {
                Console.Error.WriteLine($"unknown macro benchmark '{args[1]}'; try 'macro list'");
                return 2;
            }
            return await chosen.RunAsync(args[2..], CancellationToken.None);
        }
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}

/// <summary>A benchmark that measures a whole operation against a baseline measured in the same run and prints ratios.</summary>
public interface IMacroBenchmark
{
    string Name { get; }
    string Description { get; }
    Task<int> RunAsync(string[] args, CancellationToken cancellationToken);
}
