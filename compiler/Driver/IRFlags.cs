using System.CommandLine;
using ParallelCompiler.Passes.Infrastructure;

namespace ParallelCompiler.Driver;

/// <summary>The options every IR-producing command shares: pipeline, printing between passes, dumps, timing,
/// verification.</summary>
internal sealed class IRFlags
{
    public Option<string?> Pipeline { get; } =
        new("--pass-pipeline")
        {
            Description = "passes to run, e.g. \"shape-inference,canonicalize{max-iterations=4}\"",
        };
    public Option<bool> PrintAfterAll { get; } =
        new("--print-ir-after-all") { Description = "print the IR after every pass (to stderr)" };
    public Option<string[]> PrintBefore { get; } =
        new("--print-ir-before")
        {
            Description = "print the IR before the named pass",
            AllowMultipleArgumentsPerToken = false,
        };
    public Option<string[]> PrintAfter { get; } =
        new("--print-ir-after")
        {
            Description = "print the IR after the named pass",
            AllowMultipleArgumentsPerToken = false,
        };
    public Option<string?> DumpDir { get; } =
        new("--dump-dir") { Description = "write the IR after each pass to DIR as NN-pass.mplir" };
    public Option<bool> Timing { get; } =
        new("--timing") { Description = "print a table of the time spent in each pass" };
    public Option<bool> NoVerify { get; } = new("--no-verify") { Description = "do not verify the IR after each pass" };
    public Option<bool> DebugInfo { get; } =
        new("--print-debuginfo") { Description = "print source locations in the IR" };

    public void AddTo(Command c)
    {
        foreach (
            var o in new Option[]
            {
                Pipeline,
                PrintAfterAll,
                PrintBefore,
                PrintAfter,
                DumpDir,
                Timing,
                NoVerify,
                DebugInfo,
            }
        )
            c.Options.Add(o);
    }

    public IRPrintingOptions Build(ParseResult r, TextWriter err)
    {
        if (r.GetValue(DumpDir) is { } dump && Runtime.IO.OutputFile.Problem(dump, folder: true) is { } problem)
            throw new Syntax.UserErrorException($"--dump-dir: {problem}");
        var o = new IRPrintingOptions
        {
            Verify = !r.GetValue(NoVerify),
            PrintAfterAll = r.GetValue(PrintAfterAll),
            DumpDir = r.GetValue(DumpDir),
            Timing = r.GetValue(Timing),
            PrintLocations = r.GetValue(DebugInfo),
            Out = err,
        };
        foreach (var p in r.GetValue(PrintBefore) ?? [])
            o.PrintBefore.Add(p);
        foreach (var p in r.GetValue(PrintAfter) ?? [])
            o.PrintAfter.Add(p);
        return o;
    }
}
