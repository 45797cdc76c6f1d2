using ParallelCompiler.Driver;
using ParallelCompiler.Passes;
using ParallelCompiler.Passes.Infrastructure;
using Xunit;

namespace ParallelCompiler.Tests.Passes;

/// <summary>The pipeline as data: edited by pass name with typed options, printed as the text --pass-pipeline
/// reads.</summary>
public class PipelineBuilderTests
{
    private static PassRegistry Registry() => (PassRegistry)CompilerServices.Create().GetService(typeof(PassRegistry))!;

    [Fact]
    public void TextRoundTrips()
    {
        const string text =
            "shape-inference,canonicalize{max-iterations=4},sharding-propagation{max-sweeps=3,priority=parameters}";
        Assert.Equal(text, PipelineBuilder.Parse(text).ToString());
        Assert.Equal(Pipelines.DefaultString, PipelineBuilder.Parse(Pipelines.DefaultString).ToString());
        Assert.Equal(
            ["shape-inference", "canonicalize"],
            PipelineBuilder.Parse("builtin.module(shape-inference, canonicalize)").Steps.Select(s => s.Pass)
        );
    }

    [Fact]
    public void PassesAreAddedRemovedAndConfiguredByName()
    {
        var p = Pipelines
            .Create()
            .Set("optimizer", "zero", 1)
            .Set("autodiff", "remat", false)
            .Remove("cse")
            .Add("form-kernels");
        Assert.Contains("optimizer{zero=1}", p.ToString());
        Assert.Contains("autodiff{remat=false}", p.ToString());
        Assert.DoesNotContain("cse", p.ToString());
        Assert.EndsWith(",form-kernels", p.ToString());
        // Every run of a pass is configured, and the default pipeline itself is not changed by editing a copy.
        Assert.Equal(
            2,
            p.Set("canonicalize", "max-iterations", 7)
                .Steps.Count(s => s.ToString() == "canonicalize{max-iterations=7}")
        );
        Assert.DoesNotContain("zero", Pipelines.DefaultString);
        var passes = p.Build(Registry());
        Assert.Equal(1, passes.OfType<Optimizer>().Single().Zero);
    }

    [Fact]
    public void MistakesAreNamed()
    {
        Assert.Contains(
            "does not run 'nope'",
            Assert.Throws<PipelineException>(() => Pipelines.Create().Set("nope", "x", 1)).Message
        );
        Assert.Contains(
            "has no option 'bogus'",
            Assert
                .Throws<PipelineException>(() => Pipelines.Create().Set("cse", "bogus", true).Build(Registry()))
                .Message
        );
        Assert.Contains(
            "expects a number",
            Assert
                .Throws<PipelineException>(() =>
                    Pipelines.Create().Set("canonicalize", "max-iterations", "many").Build(Registry())
                )
                .Message
        );
        Assert.Contains(
            "not a pass name",
            Assert.Throws<PipelineException>(() => new PipelineBuilder().Add("a,b")).Message
        );
        Assert.Contains(
            "missing '}'",
            Assert.Throws<PipelineException>(() => PipelineBuilder.Parse("cse{x=1")).Message
        );
    }
}
