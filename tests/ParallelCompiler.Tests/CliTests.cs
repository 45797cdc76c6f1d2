using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests;

/// <summary>The command line contract: commands, flags and what they print.</summary>
public class CliTests
{
    [Fact]
    public void ParamsListsPathsShapesShardingsAndInitialisers()
    {
        var r = Mplc.Run("params", Repo.Path("examples", "gpt.mpl"), "-D", "L=2");
        Assert.Equal(0, r.ExitCode);
        Assert.Matches(
            @"gpt\.block\.1\.attention\.wq\s+f32\[64, 64\]\s+shard\[_, tp\]\s+normal\(0\.02\)\s+4,096",
            r.Stdout
        );
        Assert.Matches(@"gpt\.block\.0\.g1\s+f32\[64\]\s+replicated\s+ones", r.Stdout);
        Assert.DoesNotContain("gpt.block.2", r.Stdout);
    }

    [Fact]
    public void LayerCalledOnceIsNamedAfterTheLayer()
    {
        var r = Mplc.CompileSource(
            """
            layer lin(x: f32[4]) -> f32[4] { param w: f32[4, 4]; return x @ w; }
            layer two(x: f32[4]) -> f32[4] { return lin(lin(x)); }
            model enc(x: f32[4]) -> f32[4] { return two(lin(x)); }
            """
        );
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("path = \"enc.lin.w\"", r.Stdout);
        Assert.Contains("path = \"enc.two.lin.0.w\"", r.Stdout);
        Assert.Contains("path = \"enc.two.lin.1.w\"", r.Stdout);
    }

    [Fact]
    public void RunPrintsASummaryAndMeshAndEntryOptionsWork()
    {
        var r = Mplc.Run(
            "run",
            Repo.Path("examples", "gpt.mpl"),
            "-D",
            "L=1",
            "--mesh",
            "dp=1,tp=1,pp=1",
            "--seed",
            "3"
        );
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Matches(@"loss: 4\.8\d+", r.Stdout); // about ln(128): a fresh model predicts nearly uniformly
        var bad = Mplc.Run("run", Repo.Path("examples", "gpt.mpl"), "--mesh", "xx=2");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("--mesh: mesh 'grid' has no axis 'xx' (its axes: pp, dp, tp)", bad.Stderr);
        var entry = Mplc.Run("compile", Repo.Path("examples", "mlp.mpl"), "--entry", "nothere");
        Assert.Equal(1, entry.ExitCode);
        Assert.Contains("no model named 'nothere' (models: mlp)", entry.Stderr);
    }

    [Fact]
    public void SameSeedSameResultOtherSeedOtherResult()
    {
        string Out(string seed) => Mplc.Run("run", Repo.Path("examples", "mlp.mpl"), "--seed", seed).Stdout;
        Assert.Equal(Out("1"), Out("1"));
        Assert.NotEqual(Out("1"), Out("2"));
    }

    [Fact]
    public void UnknownCommandOrOptionExitsWithOne()
    {
        Assert.Equal(1, Mplc.Run("frobnicate").ExitCode);
        Assert.Equal(1, Mplc.Run("compile", Repo.Path("examples", "mlp.mpl"), "--no-such-flag").ExitCode);
    }
}
