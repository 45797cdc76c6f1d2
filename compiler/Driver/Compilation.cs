using ParallelCompiler.IR;
using ParallelCompiler.Lowering;
using ParallelCompiler.Passes.Infrastructure;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Driver;

/// <summary>The front end and the pass pipeline, as the commands use them.</summary>
public static class Compilation
{
    /// <summary>Reads a file, or reports why it cannot be read.</summary>
    public static SourceText ReadSource(string path)
    {
        try
        {
            return SourceText.Load(path);
        }
        catch (Exception e)
            when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new UserErrorException($"cannot read '{path}': {e.Message}");
        }
    }

    /// <summary>Parses and lowers a .mpl file to verified tensor IR, or throws <see
    /// cref="CompilationFailedException"/>.</summary>
    public static Operation FrontEnd(SourceText src, CompileOptions options, DiagnosticBag diags)
    {
        var program = MplSyntax.Parse(src, diags) ?? throw new CompilationFailedException(diags);
        var module = Elaborator.Lower(program, diags, options) ?? throw new CompilationFailedException(diags);
        if (Verifier.Check(module) is { } problem)
            throw new InvalidOperationException($"the front end produced " + $"invalid IR: {problem}");
        return module;
    }

    /// <summary>Parses textual IR, or throws <see cref="CompilationFailedException"/>.</summary>
    public static Operation ParseIR(SourceText src, DiagnosticBag diags, bool verify)
    {
        var module = IRParser.ParseModule(src, diags) ?? throw new CompilationFailedException(diags);
        if (verify && Verifier.Check(module) is { } problem)
        {
            diags.Error(src, default, $"invalid IR: {problem}");
            throw new CompilationFailedException(diags);
        }
        return module;
    }

    /// <summary>Runs a pipeline string over <paramref name="module"/> with the given printing options.</summary>
    public static PassManager RunPipeline(
        Operation module,
        string pipeline,
        IRPrintingOptions options,
        PassRegistry registry,
        Action<PassWarning>? warn = null
    )
    {
        PipelineBuilder parsed;
        try
        {
            parsed = PipelineBuilder.Parse(pipeline);
        }
        catch (PipelineException e)
        {
            throw new UserErrorException($"--pass-pipeline: {e.Message}");
        }
        return RunPipeline(module, parsed, options, registry, warn);
    }

    /// <summary>Runs <paramref name="pipeline"/> on <paramref name="module"/>; an unknown pass or option is a user
    /// error.</summary>
    public static PassManager RunPipeline(
        Operation module,
        PipelineBuilder pipeline,
        IRPrintingOptions options,
        PassRegistry registry,
        Action<PassWarning>? warn = null
    )
    {
        List<IPass> passes;
        try
        {
            passes = pipeline.Build(registry);
        }
        catch (PipelineException e)
        {
            throw new UserErrorException($"--pass-pipeline: {e.Message}");
        }
        var pm = new PassManager(passes, options);
        try
        {
            pm.Run(module);
        }
        finally
        {
            foreach (var w in pm.Warnings)
                warn?.Invoke(w);
        }
        return pm;
    }
}
