using ParallelCompiler.Cost;
using ParallelCompiler.IR;
using ParallelCompiler.Lowering;
using ParallelCompiler.Planner;
using ParallelCompiler.Syntax;
using Xunit;

namespace ParallelCompiler.Tests.Planner;

/// <summary>
/// The intra-operator program on its own: a model so small that splitting buys nothing (kernel launches dominate, a
/// collective only adds), so the fastest sharding replicates every weight, and the parameter-state limit that forces
/// weights to be split, over one axis and over two.
/// </summary>
public class IntraOpSolverTests
{
    private static readonly Cluster Selene = Cluster.Load("a100-80g-selene");

    private static Operation Tiny()
    {
        const string text = """
            const B = 4; const D = 8; const H = 32;
            model tiny(x: f32[B, D]) -> f32[B, D] {
              param w1: f32[D, H];
              param w2: f32[H, D];
              return gelu(x @ w1) @ w2;
            }

            """;
        var diags = new DiagnosticBag();
        var program = MplSyntax.Parse(new SourceText("tiny.mpl", text), diags);
        Assert.NotNull(program);
        var module = Elaborator.Lower(program, diags, new CompileOptions());
        Assert.True(module != null, diags.Render());
        return module;
    }

    private static IntraOpChoice Solve(int[] axes, StateLimit? limit = null) =>
        IntraOpSolver.Solve(Tiny(), axes, Selene, p => p, _ => false, 1, 1, 0, 5, limit);

    // Both weights: (8 * 32 + 32 * 8) floats of 4 bytes.
    private const double Whole = 2 * 8 * 32 * 4;

    [Fact]
    public void WithoutALimitTheFastestShardingOfATinyModelReplicatesEveryWeight()
    {
        var free = Solve([2]);
        Assert.Equal(Whole, free.StateBytes);
        Assert.All(free.ParamDims.Values, d => Assert.Equal(-1, d));
    }

    [Fact]
    public void ALimitOfHalfTheStateSplitsBothWeightsOverTheAxis()
    {
        var fit = Solve([2], new StateLimit(Whole / 2, 1));
        Assert.True(fit.StateBytes <= Whole / 2, $"{fit.StateBytes} bytes");
        Assert.Equal(2, fit.ParamDims.Count(kv => kv.Value >= 0));
    }

    [Fact]
    public void ALimitOfThreeQuartersSplitsAtLeastOneWeight()
    {
        var fit = Solve([2], new StateLimit(Whole * 0.75, 1));
        Assert.True(fit.StateBytes <= Whole * 0.75, $"{fit.StateBytes} bytes");
        Assert.Contains(fit.ParamDims.Values, d => d >= 0);
    }

    [Fact]
    public void OnTwoAxesAQuarterOfTheStateSplitsEveryWeightOverBoth()
    {
        var fit = Solve([2, 2], new StateLimit(Whole / 4, 1));
        Assert.Equal(2, fit.Ty);
        Assert.True(fit.StateBytes <= Whole / 4, $"{fit.StateBytes} bytes");
        foreach (var decl in new[] { "tiny.w1", "tiny.w2" })
        {
            Assert.True(fit.ParamDims.GetValueOrDefault(decl, -1) >= 0, decl + " over tx");
            Assert.True(fit.ParamDimsY.GetValueOrDefault(decl, -1) >= 0, decl + " over ty");
        }
    }

    [Fact]
    public void ALimitNoShardingMeetsHasNoSolution()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Solve([2], new StateLimit(Whole / 2 - 1, 1)));
        Assert.Contains("no solution", e.Message);
    }
}
