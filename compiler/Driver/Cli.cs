using System.CommandLine;
using System.Globalization;
using ParallelCompiler.Backend;
using ParallelCompiler.IR;
using ParallelCompiler.Lowering;
using ParallelCompiler.Passes;
using ParallelCompiler.Passes.Infrastructure;
using ParallelCompiler.Runtime.Model;
using ParallelCompiler.Syntax;
using Spectre.Console;

namespace ParallelCompiler.Driver;

/// <summary>
/// The <c>mplc</c> command line: compile, opt and params here; run, cost and plan in their own files. Exit codes: 0
/// success, 1 a problem with the input (reported as file:line:col: error: ...), 2 an internal compiler error (one
/// line, how to reproduce it).
/// </summary>
public sealed partial class Cli(TextWriter stdout, TextWriter stderr)
{
    private readonly IRFlags _ir = new();
    private readonly Option<string[]> _defines = new("-D")
    {
        Description = "override a const: -D NAME=VALUE",
        AllowMultipleArgumentsPerToken = false,
    };
    private readonly Option<string?> _mesh = new("--mesh")
    {
        Description = "override mesh axis sizes: --mesh dp=4,tp=2",
    };
    private readonly Option<string?> _entry = new("--entry")
    {
        Description = "the model to compile when the file has several",
    };
    private readonly Option<bool> _verbose = new("--verbose") { Description = "show stack traces of internal errors" };
    private readonly Option<int> _zero = new("--zero")
    {
        Description =
            "ZeRO stage for training: 1 splits the optimizer state over the data-parallel axis, 2 the "
            + "gradients too (reduce-scattered each microbatch), 3 the parameters too (gathered at each use)",
    };
    private readonly Option<double?> _bucketMb = new("--bucket-mb")
    {
        Description =
            "training: most MiB of gradients one started all-reduce carries (schedule-collectives; default 25)",
    };
    private readonly Option<bool> _syncCollectives = new("--sync-collectives")
    {
        Description =
            "keep gradient all-reduces and pipeline transfers blocking where they are (no schedule-collectives)",
    };
    private readonly Option<bool> _noPrefetch = new("--no-prefetch")
    {
        Description = "ZeRO-3: gather each weight just before its use, blocking (not started one gather ahead)",
    };
    private bool _isVerbose;
    private string[] _args = [];

    /// <summary>Runs the command line and returns the process exit code.</summary>
    public static int Main(string[] args, TextWriter? stdout = null, TextWriter? stderr = null) =>
        new Cli(stdout ?? Console.Out, stderr ?? Console.Error).Run(args);

    /// <summary>Parses and runs <paramref name="args"/>.</summary>
    public int Run(string[] args)
    {
        _args = args;
        _isVerbose = args.Contains("--verbose");
        var root = new RootCommand("mplc: compiles .mpl models to distributed programs");
        root.Subcommands.Add(CompileCommand());
        root.Subcommands.Add(OptCommand());
        root.Subcommands.Add(ParamsCommand());
        root.Subcommands.Add(RunCommand());
        root.Subcommands.Add(CostCommand());
        root.Subcommands.Add(PlanCommand());
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0 && !args.Any(a => a is "-h" or "--help" or "-?"))
        {
            // The error and where to look, as git and cargo do, not the whole help text. An unknown option would
            // otherwise be reported as whatever argument it displaced.
            var command = parsed.CommandResult.Command;
            var known = command
                .Options.SelectMany(o => o.Aliases.Append(o.Name))
                .Concat(root.Options.SelectMany(o => o.Aliases.Append(o.Name)))
                .ToHashSet(StringComparer.Ordinal);
            var unknown = args.Where(a =>
                    a.Length > 1 && a[0] == '-' && !double.TryParse(a, out _) && !known.Contains(a.Split('=')[0])
                )
                .ToList();
            foreach (var u in unknown)
                stderr.WriteLine($"error: unknown option '{u}'");
            if (unknown.Count == 0)
                foreach (var e in parsed.Errors)
                    stderr.WriteLine($"error: {e.Message}");
            stderr.WriteLine($"run '{(command == root ? "mplc" : $"mplc {command.Name}")} --help' for the options");
            return 1;
        }
        return parsed.Invoke(
            new InvocationConfiguration
            {
                Output = stdout,
                Error = stderr,
                EnableDefaultExceptionHandler = false,
            }
        );
    }

    private Argument<string> FileArg(string what) => new("file") { Description = what };

    private void AddFrontEndOptions(Command c)
    {
        c.Options.Add(_defines);
        c.Options.Add(_mesh);
        c.Options.Add(_entry);
        c.Options.Add(_verbose);
    }

    private Command CompileCommand()
    {
        var file = FileArg("the .mpl model");
        var output = new Option<string?>("--output", "-o")
        {
            Description = "write the compiled IR here instead of stdout",
        };
        var stats = new Option<bool>("--stats")
        {
            Description =
                "print per device: FLOPs, bytes each collective moves, peak memory; "
                + "per pipeline stage: compute, bubble, "
                + "activations held (to stderr)",
        };
        var schedule = new Option<bool>("--schedule")
        {
            Description = "print the pipeline schedule as a table, device by time slot (to stderr)",
        };
        var emit = new Option<string>("--emit")
        {
            Description =
                "what to print: ir (the per-device program, default), llvm (the kernels' LLVM IR), ptx, "
                + "asm (host assembly)",
            DefaultValueFactory = _ => "ir",
        };
        var gpu = new Option<string?>("--gpu")
        {
            Description = "the GPU to emit PTX for, e.g. sm_80 (default: the newest the loaded LLVM supports)",
        };
        var cpu = new Option<string?>("--cpu")
        {
            Description =
                $"the CPU a bundle's host kernels are compiled for: x86-64, x86-64-v2, x86-64-v3, x86-64-v4 or native "
                + $"(default: {Runtime.Model.HostCpu.DefaultLevel}; --emit asm: native)",
        };
        var c = new Command("compile", "compile a .mpl model and print (or write) the IR after the pipeline") { file };
        c.Options.Add(output);
        c.Options.Add(stats);
        c.Options.Add(schedule);
        c.Options.Add(emit);
        c.Options.Add(gpu);
        c.Options.Add(cpu);
        AddPipelineOptions(c);
        AddFrontEndOptions(c);
        _ir.AddTo(c);
        c.SetAction(r =>
            Guard(() =>
            {
                string what = r.GetValue(emit)!;
                if (what is not ("ir" or "llvm" or "ptx" or "asm"))
                    throw new UserErrorException($"--emit must be ir, " + $"llvm, ptx or asm, got '{what}'");
                string? outPath = r.GetValue(output);
                bool bundle = outPath != null && outPath.EndsWith(".mplc", StringComparison.Ordinal);
                CheckOutput("-o", outPath, folder: bundle);
                // Kernels are formed when code is generated, or when the user asks to see them formed.
                bool kernels =
                    what != "ir"
                    || bundle
                    || (r.GetValue(_ir.PrintAfter) ?? [])
                        .Concat(r.GetValue(_ir.PrintBefore) ?? [])
                        .Contains(Pipelines.Backend);
                var pipeline = PipelineOf(r);
                if (kernels && r.GetValue(_ir.Pipeline) == null)
                    pipeline.Add(Pipelines.Backend);
                var module = CompileToIR(r, r.GetValue(file)!, pipeline);
                string text = what switch
                {
                    "llvm" => Backend.KernelCompiler.LlvmIr(
                        module,
                        r.GetValue(gpu) != null ? Backend.Llvm.KernelTarget.Ptx : Backend.Llvm.KernelTarget.Cpu,
                        r.GetValue(gpu)
                    ),
                    "ptx" => Backend.KernelCompiler.Ptx(module, r.GetValue(gpu)),
                    "asm" => Backend.KernelCompiler.HostAssembly(module, r.GetValue(cpu)),
                    _ => Printer.Print(module, r.GetValue(_ir.DebugInfo)),
                };
                if (bundle)
                    stdout.WriteLine(
                        "wrote "
                            + Backend.BundleWriter.Write(
                                module,
                                outPath!,
                                r.GetValue(gpu),
                                r.GetValue(cpu) ?? Runtime.Model.HostCpu.DefaultLevel
                            )
                    );
                else if (outPath is { } o)
                    WriteText(o, text);
                else
                    stdout.Write(text);
                if (r.GetValue(schedule))
                    Reports.ScheduleReport.Print(module, stderr);
                if (r.GetValue(stats))
                {
                    Reports.StatsReport.Print(module, stderr);
                    // With @remat, the same program without recomputation shows what it saves.
                    if (module.Walk().Any(o => o.GetAttr("recompute") != null) && PipelineOf(r).Contains("autodiff"))
                    {
                        var plain = CompileToIR(
                            r,
                            r.GetValue(file)!,
                            PipelineOf(r).Set("autodiff", "remat", false),
                            quiet: true
                        );
                        var mesh = module.DeviceMesh();
                        var with = Analysis.DeviceStats.Of(module.EntryFunction()!, mesh, 0);
                        var without = Analysis.DeviceStats.Of(plain.EntryFunction()!, mesh, 0);
                        stderr.WriteLine(
                            $"@remat: peak memory {Analysis.Units.Bytes(with.PeakBytes)} per device with "
                                + $"recomputation, "
                                + $"{Analysis.Units.Bytes(without.PeakBytes)} without; "
                                + $"{Analysis.DeviceStats.Count(with.Flops)} "
                                + $"FLOPs with, {Analysis.DeviceStats.Count(without.Flops)} without"
                        );
                    }
                }
                return 0;
            })
        );
        return c;
    }

    private Command OptCommand()
    {
        var file = FileArg("a textual IR file (.mplir), or - for standard input");
        var output = new Option<string?>("--output", "-o") { Description = "write the IR here instead of stdout" };
        var c = new Command("opt", "run passes on textual IR; with no pipeline, parse, verify and print it") { file };
        c.Options.Add(output);
        c.Options.Add(_verbose);
        _ir.AddTo(c);
        c.SetAction(r =>
            Guard(() =>
            {
                string path = r.GetValue(file)!;
                var src =
                    path == "-"
                        ? new SourceText("<stdin>", System.Console.In.ReadToEnd())
                        : Compilation.ReadSource(path);
                var diags = new DiagnosticBag();
                var options = _ir.Build(r, stderr);
                CheckOutput("-o", r.GetValue(output));
                var module = Compilation.ParseIR(src, diags, options.Verify);
                RunPasses(module, ParsePipeline(r.GetValue(_ir.Pipeline) ?? ""), options);
                string text = Printer.Print(module, options.PrintLocations);
                if (r.GetValue(output) is { } o)
                    WriteText(o, text);
                else
                    stdout.Write(text);
                return 0;
            })
        );
        return c;
    }

    private Command ParamsCommand()
    {
        var file = FileArg("the .mpl model");
        var c = new Command("params", "list the model's parameters: path, shape, sharding, initialiser") { file };
        AddFrontEndOptions(c);
        c.SetAction(r =>
            Guard(() =>
            {
                var src = Compilation.ReadSource(r.GetValue(file)!);
                var diags = new DiagnosticBag();
                var module = Compilation.FrontEnd(src, FrontEndOptions(r), diags);
                PrintDiagnostics(diags);
                var table = new Table().Border(TableBorder.Simple);
                table.AddColumns("parameter", "shape", "sharding", "init", "elements");
                long total = 0;
                foreach (
                    var op in module.EntryFunction()!.Regions[0].Entry.Operations.Where(o => o.Name == "tensor.param")
                )
                {
                    var t = op.Result.TensorType;
                    total += t.NumElements;
                    string init =
                        op.StringAttr("init") == "normal"
                            ? $"normal({FloatAttr.Format(op.FloatAttr("std"))})"
                            : op.StringAttr("init");
                    table.AddRow(
                        Markup.Escape(op.StringAttr("path")),
                        Markup.Escape(t.ToSourceString()),
                        Markup.Escape(t.Sharding?.ToString() ?? "replicated"),
                        Markup.Escape(init),
                        t.NumElements.ToString("N0", CultureInfo.InvariantCulture)
                    );
                }
                table.Caption($"{total.ToString("N0", CultureInfo.InvariantCulture)} parameters in all");
                Reports.Terminal.For(stdout).Write(table);
                return 0;
            })
        );
        return c;
    }

    private Operation CompileToIR(ParseResult r, string path, PipelineBuilder? pipeline = null, bool quiet = false)
    {
        var module = FrontEnd(r, path, quiet);
        RunPasses(module, pipeline ?? PipelineOf(r), quiet ? new IRPrintingOptions() : _ir.Build(r, stderr), quiet);
        return module;
    }

    /// <summary>The module before the pipeline: the elaborated source, or textual IR (a dump between passes, or
    /// hand-written) as it stands.</summary>
    private Operation FrontEnd(ParseResult r, string path, bool quiet)
    {
        var src = Compilation.ReadSource(path);
        var diags = new DiagnosticBag();
        var module = path.EndsWith(".mplir", StringComparison.Ordinal)
            ? Compilation.ParseIR(src, diags, verify: true)
            : Compilation.FrontEnd(src, FrontEndOptions(r), diags);
        if (!quiet)
            PrintDiagnostics(diags);
        return module;
    }

    /// <summary>The pipeline the user gave, or the default one with --zero applied to its optimizer pass: a new copy to
    /// edit.</summary>
    private PipelineBuilder PipelineOf(ParseResult r)
    {
        int zero = r.GetValue(_zero);
        if (zero is not (0 or 1 or 2 or 3))
            throw new UserErrorException($"--zero must be 0, 1, 2 or 3, got {zero}");
        if (r.GetValue(_ir.Pipeline) is { } given)
        {
            if (r.GetValue(_bucketMb) != null || r.GetValue(_syncCollectives) || r.GetValue(_noPrefetch))
                throw new UserErrorException(
                    "--bucket-mb, --sync-collectives and --no-prefetch apply to the default pipeline; with "
                        + "--pass-pipeline write schedule-collectives{bucket-mb=N,prefetch=false} or leave it out"
                );
            return zero == 0
                ? ParsePipeline(given)
                : throw new UserErrorException(
                    "--zero applies to the default pipeline; with --pass-pipeline write " + "optimizer{zero=1}"
                );
        }
        var pipeline = Pipelines.Create();
        if (zero != 0)
            pipeline.Set("optimizer", "zero", zero);
        if (r.GetValue(_bucketMb) is { } mb)
        {
            if (mb < 0 || double.IsNaN(mb))
                throw new UserErrorException($"--bucket-mb must be at least 0, got {mb}");
            pipeline.Set("schedule-collectives", "bucket-mb", mb);
        }
        if (r.GetValue(_noPrefetch))
            pipeline.Set("schedule-collectives", "prefetch", false);
        return r.GetValue(_syncCollectives) ? pipeline.Remove("schedule-collectives") : pipeline;
    }

    /// <summary>The options that edit the default pipeline's passes.</summary>
    private void AddPipelineOptions(Command c)
    {
        c.Options.Add(_zero);
        c.Options.Add(_bucketMb);
        c.Options.Add(_syncCollectives);
        c.Options.Add(_noPrefetch);
    }

    private static PipelineBuilder ParsePipeline(string text)
    {
        try
        {
            return PipelineBuilder.Parse(text);
        }
        catch (PipelineException e)
        {
            throw new UserErrorException($"--pass-pipeline: {e.Message}");
        }
    }

    private void RunPasses(Operation module, PipelineBuilder pipeline, IRPrintingOptions options, bool quiet = false)
    {
        using var services = CompilerServices.Create();
        var registry = (PassRegistry)services.GetService(typeof(PassRegistry))!;
        var pm = Compilation.RunPipeline(
            module,
            pipeline,
            options,
            registry,
            w =>
            {
                if (!quiet)
                    stderr.WriteLine(Render(Severity.Warning, w.Location, w.Message));
            }
        );
        if (options.Timing)
            Reports.TimingReport.Print(pm, stderr);
    }

    private readonly Dictionary<string, SourceText?> _sources = new();

    /// <summary>A message at an IR location, with the source line and a caret when the file can be read.</summary>
    private string Render(Severity severity, Location loc, string message)
    {
        SourceText? src = null;
        if (!loc.IsUnknown && !_sources.TryGetValue(loc.File, out src))
        {
            try
            {
                src = SourceText.Load(loc.File);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException) { }
            _sources[loc.File] = src;
        }
        if (src == null)
            return (loc.IsUnknown ? "" : $"{loc.File}:{loc.Line}:{loc.Column}: ")
                + (severity == Severity.Error ? "error: " : "warning: ")
                + message;
        int offset = src.Offset(loc.Line, loc.Column);
        return new Diagnostic(severity, src, new TextSpan(offset, 1), message).Render();
    }

    private CompileOptions FrontEndOptions(ParseResult r)
    {
        var o = new CompileOptions { Entry = r.GetValue(_entry) };
        foreach (var d in r.GetValue(_defines) ?? [])
        {
            int eq = d.IndexOf('=');
            if (
                eq > 0
                && !long.TryParse(d[(eq + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _)
                && double.TryParse(d[(eq + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out double f)
                && double.IsFinite(f)
            )
            {
                o.FloatDefines[d[..eq].Trim()] = f;
                continue;
            }
            var (name, value) = SplitAssignment(d, "-D", "NAME=VALUE", "a number");
            o.Defines[name] = value;
        }
        if (r.GetValue(_mesh) is { } mesh)
            foreach (
                var part in mesh.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            )
            {
                var (name, value) = SplitAssignment(part, "--mesh", "axis=size");
                if (o.Mesh.Any(m => m.Key == name))
                    throw new UserErrorException($"--mesh: axis '{name}' is given twice");
                o.Mesh.Add(new(name, value));
            }
        return o;
    }

    private static (string, long) SplitAssignment(string s, string flag, string form, string what = "an integer")
    {
        int eq = s.IndexOf('=');
        if (
            eq <= 0
            || !long.TryParse(s[(eq + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v)
        )
            throw new UserErrorException($"{flag} expects {form} with {what} value, got '{s}'");
        return (s[..eq].Trim(), v);
    }

    private void PrintDiagnostics(DiagnosticBag diags)
    {
        if (diags.Items.Count > 0)
            stderr.Write(diags.Render());
    }

    /// <summary>Refuses, before any work, an output path that cannot be written (a folder, a missing
    /// folder).</summary>
    private static void CheckOutput(string flag, string? path, bool folder = false)
    {
        if (path != null && Runtime.IO.OutputFile.Problem(path, folder) is { } problem)
            throw new UserErrorException($"{flag}: {problem}");
    }

    private static void WriteText(string path, string text)
    {
        try
        {
            File.WriteAllText(path, text);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserErrorException(Runtime.IO.OutputFile.Describe(path, e));
        }
    }

    /// <summary>Maps every failure to an exit code: user errors 1, internal errors 2 with a way to reproduce
    /// them.</summary>
    private int Guard(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (CompilationFailedException e)
        {
            stderr.Write(e.Diagnostics.Render());
            return 1;
        }
        catch (Exception e)
            when (e is UserErrorException or Runtime.Model.RunInputException or Runtime.Distributed.DeviceException)
        {
            stderr.WriteLine($"error: {Diagnostic.Shorten(e.Message)}");
            return 1;
        }
        catch (PassInputException e)
        {
            stderr.WriteLine(Render(Severity.Error, e.Location, e.Message));
            return 1;
        }
        catch (PassFailureException e)
        {
            string repro = Path.Combine(Path.GetTempPath(), $"mplc-repro-{e.Pass}-{Environment.ProcessId}.mplir");
            try
            {
                File.WriteAllText(repro, e.InputIR);
            }
            catch (IOException)
            {
                repro = "(could not write the reproducer)";
            }
            stderr.WriteLine($"mplc: internal compiler error: {e.Message}");
            stderr.WriteLine($"mplc: reproduce with: mplc opt {repro} --pass-pipeline={e.Pass}");
            if (_isVerbose)
                stderr.WriteLine(e.InnerException?.ToString() ?? e.ToString());
            return 2;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            stderr.WriteLine($"mplc: internal compiler error: {e.GetType().Name}: {e.Message}");
            stderr.WriteLine(
                $"mplc: reproduce with: mplc {string.Join(" ", _args.Select(Quote))}"
                    + (_isVerbose ? "" : " --verbose (for a stack trace)")
            );
            if (_isVerbose)
                stderr.WriteLine(e.ToString());
            return 2;
        }
    }

    private static string Quote(string a) =>
        a.Length > 0 && a.All(c => char.IsLetterOrDigit(c) || "-_=./,:{}".Contains(c))
            ? a
            : $"'{a.Replace("'", "'\\''")}'";
}
