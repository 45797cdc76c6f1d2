using ParallelCompiler.Driver;
using ParallelCompiler.IR;
using ParallelCompiler.Passes;
using ParallelCompiler.Passes.Infrastructure;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Passes;

/// <summary>Pipelines as strings, options, instrumentation and failure reporting.</summary>
public class PassManagerTests
{
    private const string Small =
        "module {\n  func.func @f(%x: tensor<4xf32>) -> tensor<4xf32> {\n    %0 = tensor.neg "
        + "%x : (tensor<4xf32>) -> tensor<4xf32>\n    %1 = tensor.neg %0 : (tensor<4xf32>) -> tensor<4xf32>\n    "
        + "func.return %1 : tensor<4xf32>\n  }\n}\n";

    private static PassRegistry Registry() => (PassRegistry)CompilerServices.Create().GetService(typeof(PassRegistry))!;

    [Fact]
    public void PipelineStringsConfigurePasses()
    {
        var passes = Registry().Parse("shape-inference, canonicalize{max-iterations=4},cse");
        Assert.Equal(["shape-inference", "canonicalize", "cse"], passes.Select(p => p.Name));
        Assert.Equal(4, ((Canonicalize)passes[1]).MaxIterations);
    }

    [Theory]
    [InlineData(
        "nope",
        "unknown pass 'nope' (passes: autodiff, canonicalize, cse, dce, form-kernels, "
            + "insert-reshards, microbatch, mixed-precision, optimizer, pipeline-scatter-gather, pipeline-schedule, "
            + "pipeline-stages, "
            + "pipeline-transfers, "
            + "schedule-collectives, shape-inference, sharding-propagation, spmdize)"
    )]
    [InlineData("canonicalize{depth=2}", "pass 'canonicalize' has no option 'depth' (options: max-iterations)")]
    [InlineData("canonicalize{max-iterations=many}", "option 'max-iterations' expects a number, got 'many'")]
    [InlineData("cse{x=1}", "pass 'cse' has no option 'x' (it takes none)")]
    [InlineData("canonicalize{max-iterations=2", "missing '}' after the options of 'canonicalize'")]
    [InlineData("cse,,dce", "empty pass name")]
    public void BadPipelinesAreClearErrors(string pipeline, string message)
    {
        var e = Assert.Throws<PipelineException>(() => Registry().Parse(pipeline));
        Assert.Contains(message, e.Message);
    }

    private sealed class BreaksIR : IPass
    {
        public string Name => "break-ir";
        public string Description => "test pass that leaves a wrong type behind";

        public bool Run(Operation module)
        {
            module.EntryFunction()!.Regions[0].Entry.First!.Results[0].Type = new TensorType(DType.F32, [9]);
            return true;
        }
    }

    private sealed class Throws : IPass
    {
        public string Name => "throws";
        public string Description => "test pass that fails";

        public bool Run(Operation module) => throw new InvalidOperationException("boom");
    }

    [Fact]
    public void VerifierNamesThePassThatBrokeTheIR()
    {
        var m = IRParser.ParseModule(Small);
        var e = Assert.Throws<PassFailureException>(() =>
            new PassManager([new BreaksIR()], new IRPrintingOptions()).Run(m)
        );
        Assert.StartsWith(
            "pass 'break-ir' produced invalid IR: 'tensor.neg': neg: result 0 has type tensor<9xf32>",
            e.Message
        );
        Assert.Equal(Small, e.InputIR); // the reproducer is the IR the pass was given
        // With verification off, the broken IR goes through.
        new PassManager([new BreaksIR()], new IRPrintingOptions { Verify = false }).Run(IRParser.ParseModule(Small));
    }

    [Fact]
    public void APassThatThrowsIsReportedWithItsInput()
    {
        var e = Assert.Throws<PassFailureException>(() =>
            new PassManager([new Throws()], new IRPrintingOptions()).Run(IRParser.ParseModule(Small))
        );
        Assert.Equal("pass 'throws' failed: boom", e.Message);
        Assert.Equal("throws", e.Pass);
    }

    [Fact]
    public void TheReproducerIsTheIRTheFailingPassWasGivenAfterThePassesBeforeIt()
    {
        // canonicalize folds neg(neg(x)) to x: the failing pass is given that, not the pipeline's input.
        var passes = Registry().Parse("shape-inference,canonicalize,dce");
        var expected = IRParser.ParseModule(Small);
        new PassManager(passes, new IRPrintingOptions()).Run(expected);
        var e = Assert.Throws<PassFailureException>(() =>
            new PassManager([.. Registry().Parse("shape-inference,canonicalize,dce"), new Throws()], new()).Run(
                IRParser.ParseModule(Small)
            )
        );
        Assert.NotEqual(Small, e.InputIR);
        Assert.Equal(Printer.Print(expected), e.InputIR);
    }

    [Fact]
    public void DumpDirHasOneNumberedFilePerPassAndTimingPrintsATable()
    {
        string dir = Directory.CreateTempSubdirectory("mplc-dump").FullName;
        string input = Path.Combine(dir, "in.mplir");
        File.WriteAllText(input, Small);
        try
        {
            var r = Mplc.Run(
                "opt",
                input,
                "--pass-pipeline=shape-inference,canonicalize,cse,dce",
                "--dump-dir",
                Path.Combine(dir, "d"),
                "--timing"
            );
            Assert.Equal(0, r.ExitCode);
            Assert.Equal(
                ["00-input.mplir", "01-shape-inference.mplir", "02-canonicalize.mplir", "03-cse.mplir", "04-dce.mplir"],
                Directory.GetFiles(Path.Combine(dir, "d")).Select(Path.GetFileName).Order()
            );
            Assert.Contains("canonicalize", r.Stderr);
            Assert.Contains("total", r.Stderr);
            Assert.Contains("func.return %x", r.Stdout);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void OptWithoutPipelineReproducesItsInput()
    {
        var m = IRParser.ParseModule(Small);
        Assert.Equal(Small, Printer.Print(m));
    }

    [Fact]
    public void OptReportsBadPipelineAndBadIRWithExitCode1()
    {
        string dir = Directory.CreateTempSubdirectory("mplc-opt").FullName;
        string input = Path.Combine(dir, "in.mplir");
        File.WriteAllText(input, Small.Replace("%0 = tensor.neg %x", "%0 = tensor.neg %q"));
        try
        {
            var bad = Mplc.Run("opt", input);
            Assert.Equal(1, bad.ExitCode);
            Assert.Contains("in.mplir:3:21: error: use of undefined value %q", bad.Stderr);
            File.WriteAllText(input, Small);
            var badPipeline = Mplc.Run("opt", input, "--pass-pipeline=frobnicate");
            Assert.Equal(1, badPipeline.ExitCode);
            Assert.Contains("error: --pass-pipeline: unknown pass 'frobnicate'", badPipeline.Stderr);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
