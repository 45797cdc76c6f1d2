using System.Diagnostics;
using ParallelCompiler.IR;

namespace ParallelCompiler.Passes.Infrastructure;

/// <summary>What to show and check between passes.</summary>
public sealed class IRPrintingOptions
{
    /// <summary>Verify the IR after every pass (on unless --no-verify).</summary>
    public bool Verify { get; set; } = true;

    /// <summary>Print the IR after every pass.</summary>
    public bool PrintAfterAll { get; set; }

    /// <summary>Print the IR before these passes.</summary>
    public HashSet<string> PrintBefore { get; } = new(StringComparer.Ordinal);

    /// <summary>Print the IR after these passes.</summary>
    public HashSet<string> PrintAfter { get; } = new(StringComparer.Ordinal);

    /// <summary>Write the input and the IR after each pass as numbered files here.</summary>
    public string? DumpDir { get; set; }

    /// <summary>Collect the time of each pass.</summary>
    public bool Timing { get; set; }

    /// <summary>Print source locations in IR dumps.</summary>
    public bool PrintLocations { get; set; }

    /// <summary>Where IR dumps go (standard error by default).</summary>
    public TextWriter Out { get; set; } = Console.Error;
}

/// <summary>A pass failed or left invalid IR. Carries what is needed to reproduce the failure with <c>mplc
/// opt</c>.</summary>
public sealed class PassFailureException(string pass, string message, Func<string> inputIR, Exception? inner)
    : Exception(message, inner)
{
    private readonly Lazy<string> _inputIR = new(inputIR);

    /// <summary>The pass that failed.</summary>
    public string Pass { get; } = pass;

    /// <summary>The IR the pass was given (made when first asked for).</summary>
    public string InputIR => _inputIR.Value;
}

/// <summary>Runs passes in order with verification, printing, dumps and timing between them.</summary>
public sealed class PassManager(IReadOnlyList<IPass> passes, IRPrintingOptions options)
{
    /// <summary>Time per pass from the last run, in order.</summary>
    public List<(string Pass, TimeSpan Time)> Timings { get; } = new();

    /// <summary>Warnings the passes gave, in order.</summary>
    public List<PassWarning> Warnings { get; } = new();

    /// <summary>The passes, in order.</summary>
    public IReadOnlyList<IPass> Passes => passes;

    /// <summary>Runs every pass on <paramref name="module"/>.</summary>
    public void Run(Operation module)
    {
        if (options.DumpDir != null)
        {
            Directory.CreateDirectory(options.DumpDir);
            File.WriteAllText(Path.Combine(options.DumpDir, "00-input.mplir"), Print(module));
        }
        // A failing pass's reproducer is the IR it was given: the pipeline's input is kept (it is small: the passes
        // grow the program), and only on failure are the passes before the failing one run again on a copy of it.
        var input = module.Clone();
        for (int i = 0; i < passes.Count; i++)
        {
            var pass = passes[i];
            if (options.PrintBefore.Contains(pass.Name))
                Dump($"IR before {pass.Name}", module);
            int upTo = i;
            string before() => InputOf(input, upTo);
            if (pass is IWarningSource ws)
                ws.Warn = (loc, msg) => Warnings.Add(new PassWarning(pass.Name, loc, msg));
            var sw = Stopwatch.StartNew();
            try
            {
                pass.Run(module);
            }
            catch (Exception e)
                when (e is not PassFailureException and not PassInputException and not OutOfMemoryException)
            {
                throw new PassFailureException(pass.Name, $"pass '{pass.Name}' failed: {e.Message}", before, e);
            }
            sw.Stop();
            Timings.Add((pass.Name, sw.Elapsed));
            if (options.Verify && Verifier.Check(module) is { } problem)
                throw new PassFailureException(
                    pass.Name,
                    $"pass '{pass.Name}' produced invalid IR: {problem}",
                    before,
                    null
                );
            if (options.PrintAfterAll || options.PrintAfter.Contains(pass.Name))
                Dump($"IR after {pass.Name}", module);
            if (options.DumpDir != null)
                File.WriteAllText(Path.Combine(options.DumpDir, $"{i + 1:00}-{pass.Name}.mplir"), Print(module));
        }
    }

    private string Print(Operation module) => Printer.Print(module, options.PrintLocations);

    /// <summary>The IR the pass at <paramref name="index"/> was given, from the pipeline's input.</summary>
    private string InputOf(Operation input, int index)
    {
        var copy = input.Clone();
        foreach (var pass in passes.Take(index))
        {
            if (pass is IWarningSource ws)
                ws.Warn = null;
            pass.Run(copy);
        }
        return Print(copy);
    }

    private void Dump(string title, Operation module)
    {
        options.Out.WriteLine($"// -----// {title} //----- //");
        options.Out.Write(Print(module));
    }
}

/// <summary>Something a pass noticed about the program that the user should see (e.g. a sharded tensor gathered in
/// full).</summary>
public sealed record PassWarning(string Pass, Location Location, string Message);

/// <summary>A pass that may warn: the pass manager hands it a sink before it runs.</summary>
public interface IWarningSource
{
    /// <summary>Where warnings go; null when nobody listens.</summary>
    Action<Location, string>? Warn { get; set; }
}

/// <summary>
/// The input program is wrong in a way only a pass can see (e.g. a dimension not divisible by its mesh axes in
/// hand-written IR). Reported like a front-end error, with exit code 1, not as an internal error.
/// </summary>
public sealed class PassInputException(Location location, string message) : Exception(message)
{
    /// <summary>Where in the program.</summary>
    public Location Location { get; } = location;
}
