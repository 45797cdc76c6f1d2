using ParallelCompiler.Passes;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Model;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Sharding;

/// <summary>
/// Positions split over a mesh axis (sequence parallelism), the bugs found there, and <c>mplc run --check</c>,
/// which runs the one-device build beside the distributed one on the same arrays.
/// </summary>
public class SequenceParallelTests() : TempDirTest("mplc-sp")
{
    private string Model(string source)
    {
        string path = P("m.mpl");
        File.WriteAllText(path, source);
        return path;
    }

    private static string Out(Mplc.Result r)
    {
        Assert.True(r.ExitCode == 0, r.Stderr);
        return r
            .Stdout.Split('\n')
            .First(l =>
                l.StartsWith("out:", StringComparison.Ordinal) || l.StartsWith("loss:", StringComparison.Ordinal)
            );
    }

    /// <summary>Two runs on random inputs, on the mesh and on one device, print the same; --check agrees and says
    /// <paramref name="expected"/>.</summary>
    private static void RandomRunsAgree(string path, string oneDevice, string expected)
    {
        Assert.Equal(Out(Mplc.Run("run", path, "--mesh", oneDevice)), Out(Mplc.Run("run", path)));
        var check = Mplc.Run("run", path, "--check");
        Assert.True(check.ExitCode == 0, check.Stdout + check.Stderr);
        Assert.Contains(expected, check.Stdout);
    }

    /// <summary>
    /// Regression: with positions split, the labels reach cross_entropy through a slice, and the random labels of
    /// a run were drawn below 10 instead of below the 16 classes, so the mesh and one device ran on different labels.
    /// </summary>
    [Fact]
    public void CrossEntropyOverSplitPositionsDrawsTheSameLabels()
    {
        string path = Model(
            """
            mesh grid[tp = 2];
            const B = 2; const S = 4; const V = 16;
            model m(x: f32[B, S, V] shard[_, tp, _], labels: i32[B, S]) -> f32[] {
              return cross_entropy(x, labels);
            }
            """
        );
        RandomRunsAgree(path, "tp=1", "check: mesh tp=2 equals one device: 1 array(s)");
    }

    /// <summary>Regression: token ids sliced along positions before an embedding whose table is tied to the output
    /// matmul.</summary>
    [Fact]
    public void TiedEmbeddingOverSplitPositionsDrawsTheSameIds()
    {
        string path = Model(
            """
            mesh grid[dp = 2, tp = 2];
            const B = 4; const S = 8; const D = 16; const V = 24;
            layer body(x: f32[B, S, D] shard[dp, tp, _]) -> f32[B, S, D] shard[dp, tp, _] {
              param w: f32[D, D] shard[_, tp];
              return gelu(x @ w);
            }
            model m(tokens: i32[B, S], labels: i32[B, S]) -> f32[] {
              param wte: f32[V, D];
              let x = body(embedding(tokens, wte));
              return cross_entropy(x @ transpose(wte, [1, 0]), labels);
            }
            train m optimizer sgd(lr = 0.5);
            """
        );
        RandomRunsAgree(path, "dp=1,tp=1", "check: m.wte: largest relative difference");
    }

    /// <summary>The sequence-parallel transformer trains as one device does and moves no weight.</summary>
    [Fact]
    public void SequenceParallelTransformerEqualsOneDevice()
    {
        var r = Mplc.Run("run", Repo.Path("examples", "gpt_sp.mpl"), "-D", "L=2", "--check");
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Contains("check: mesh dp=2,tp=2 equals one device", r.Stdout);
        Assert.DoesNotContain("gathered in full", r.Stderr);
    }

    /// <summary>Either priority can be forced; activations first gathers the weights, and a bad value is
    /// named.</summary>
    [Fact]
    public void PropagationPriorityCanBeForcedAndIsChecked()
    {
        string Pipeline(string priority) =>
            ParallelCompiler.Passes.Pipelines.DefaultString.Replace(
                "sharding-propagation",
                $"sharding-propagation{{priority={priority}}}"
            );
        var weights = Mplc.Run(
            "compile",
            Repo.Path("examples", "gpt_sp.mpl"),
            "-D",
            "L=1",
            "--pass-pipeline",
            Pipeline("activations"),
            "-o",
            P("a.mplir")
        );
        Assert.True(weights.ExitCode == 0, weights.Stderr);
        Assert.Contains("gathered in full", weights.Stderr);
        var bad = Mplc.Run(
            "compile",
            Repo.Path("examples", "gpt_sp.mpl"),
            "-D",
            "L=1",
            "--pass-pipeline",
            Pipeline("weights"),
            "-o",
            P("b.mplir")
        );
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("priority must be auto, activations or parameters, got 'weights'", bad.Stderr);
    }

    /// <summary>Every example passes --check on its own mesh (the transformer with two layers, to keep it
    /// short).</summary>
    [Theory]
    [InlineData("mlp.mpl")]
    [InlineData("classifier.mpl")]
    [InlineData("attention.mpl")]
    [InlineData("gpt.mpl")]
    public void EveryExamplePassesCheck(string example)
    {
        var r = Mplc.Run([
            "run",
            Repo.Path("examples", example),
            "--check",
            .. example.StartsWith("gpt", StringComparison.Ordinal) ? new[] { "-D", "L=2" } : [],
        ]);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Matches(@"check: mesh \S+ equals one device: \d+ array\(s\), largest relative difference", r.Stdout);
    }

    [Fact]
    public void CheckRefusesWhatItCannotCompare()
    {
        var withOut = Mplc.Run("run", Repo.Path("examples", "mlp.mpl"), "--check", "--out", P("o.npz"));
        Assert.Equal(1, withOut.ExitCode);
        Assert.Contains("error: --check compares two runs", withOut.Stderr);
        // Global textual IR is checked like the source; a per-device program cannot be put on one device any more.
        string ir = P("m.mplir"),
            spmd = P("spmd.mplir");
        Assert.Equal(
            0,
            Mplc.Run("compile", Repo.Path("examples", "mlp.mpl"), "--pass-pipeline", "", "-o", ir).ExitCode
        );
        Assert.Contains("equals one device", Mplc.Run("run", ir, "--check").Stdout);
        Assert.Equal(0, Mplc.Run("compile", Repo.Path("examples", "mlp.mpl"), "-o", spmd).ExitCode);
        var fromSpmd = Mplc.Run("run", spmd, "--check");
        Assert.Equal(1, fromSpmd.ExitCode);
        Assert.Contains("--check needs the global program", fromSpmd.Stderr);
    }

    /// <summary>The comparison behind --check: the worst array, its place and values, and tolerances by
    /// dtype.</summary>
    [Fact]
    public void ComparisonFindsTheWorstArray()
    {
        var a = new RunOutcome(
            [NDArray.FromFloats([3], [1f, 2f, 3f])],
            [0.5f],
            new Dictionary<string, NDArray> { ["w"] = NDArray.FromFloats([2], [1f, 1f]) }
        );
        var b = new RunOutcome(
            [NDArray.FromFloats([3], [1f, 2f, 3.5f])],
            [0.5f],
            new Dictionary<string, NDArray> { ["w"] = NDArray.FromFloats([2], [1f, 1f]) }
        );
        var diffs = RunComparison.Compare(a, b, training: true);
        Assert.Equal(["out", "loss", "w"], diffs.Select(d => d.Name));
        var worst = RunComparison.Worst(diffs)!;
        Assert.Equal(("out", 2L, 3.0, 3.5), (worst.Name, worst.Index, worst.Expected, worst.Got));
        Assert.Equal(0.5 / 3, worst.Error, 6);
        Assert.Null(RunComparison.Worst(RunComparison.Compare(a, a, training: true)));
        Assert.True(RunComparison.Tolerance(DType.F32) < RunComparison.Tolerance(DType.F16));
        Assert.True(RunComparison.Tolerance(DType.F16) < RunComparison.Tolerance(DType.BF16));
        Assert.Equal(0, RunComparison.Tolerance(DType.I32));
    }
}
