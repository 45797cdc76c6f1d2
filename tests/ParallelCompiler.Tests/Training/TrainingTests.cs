using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Tests.Interp;
using ParallelCompiler.Tests.Sharding;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Training;

/// <summary>Training end to end through `mplc run`: against numpy's hand-derived gradients, across meshes, and across a
/// save and resume.</summary>
public sealed class TrainingTests() : TempDirTest("mplc-train")
{
    private static NDArray Normal(long[] shape, int seed, float scale)
    {
        var rng = new Random(seed);
        var data = new float[NDArray.ShapeSize(shape)];
        for (int i = 0; i < data.Length; i++)
            data[i] =
                scale
                * (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        return NDArray.FromFloats(shape, data);
    }

    private static void Run(params string[] args)
    {
        var r = Mplc.Run(args);
        Assert.True(r.ExitCode == 0, $"mplc {string.Join(" ", args)} exited with {r.ExitCode}\n{r.Stdout}\n{r.Stderr}");
    }

    private static NDArray Read(string path, string key) => ArrayFile.Read(path)[key].Array;

    /// <summary>
    /// Three steps of examples/classifier.mpl on its dp=2, tp=2 mesh against numpy with hand-derived gradients,
    /// for plain SGD (the example), SGD with momentum and weight decay, and adam (PyTorch's definitions).
    /// </summary>
    [Theory]
    [InlineData("sgd(lr = 0.5)", "sgd:lr=0.5")]
    [InlineData("sgd(lr = 0.3, momentum = 0.9, weight_decay = 0.01)", "sgd:lr=0.3,momentum=0.9,weight_decay=0.01")]
    [InlineData("adam(lr = 0.01, beta1 = 0.8)", "adam:lr=0.01,beta1=0.8")]
    public void ClassifierOnItsMeshMatchesHandDerivedGradients(string declaration, string oracleSpec)
    {
        var rng = new Random(7);
        Npz.Write(
            P("in.npz"),
            new Dictionary<string, NDArray>
            {
                ["x"] = Normal([16, 32], 1, 1f),
                ["labels"] = NDArray.FromInts([16], Enumerable.Range(0, 16).Select(_ => rng.Next(10)).ToArray()),
            }
        );
        Npz.Write(
            P("p.npz"),
            new Dictionary<string, NDArray>
            {
                ["classifier.w1"] = Normal([32, 64], 2, 0.3f),
                ["classifier.b1"] = Normal([64], 3, 0.1f),
                ["classifier.w2"] = Normal([64, 10], 4, 0.3f),
            }
        );
        string model = P("classifier.mpl");
        File.WriteAllText(
            model,
            File.ReadAllText(Repo.Path("examples", "classifier.mpl")).Replace("sgd(lr = 0.5)", declaration)
        );
        Run(
            "run",
            model,
            "--inputs",
            P("in.npz"),
            "--params",
            P("p.npz"),
            "--steps",
            "3",
            "--out",
            P("out.npz"),
            "--save-params",
            P("trained.npz")
        );
        Python.RunOk(
            NumpyOracle.RunFile,
            Repo.Path("tests", "oracle", "train.py"),
            P("in.npz"),
            P("p.npz"),
            oracleSpec,
            "3",
            P("expected.npz")
        );
        var expected = ArrayFile.Read(P("expected.npz"));
        Assert.True(Distributed.MaxRelativeError(expected["loss"].Array, Read(P("out.npz"), "loss")) <= 1e-4);
        var trained = ArrayFile.Read(P("trained.npz"));
        foreach (var key in new[] { "classifier.w1", "classifier.b1", "classifier.w2" })
        {
            double err = Distributed.MaxRelativeError(expected[key].Array, trained[key].Array);
            Assert.True(err <= 1e-4, $"{key}: relative error {err:G3}");
        }
    }

    /// <summary>The transformer of docs/language.md trains with adam to the same losses on dp=2, tp=2 as on one
    /// device.</summary>
    [Fact]
    public void TransformerTrainsAlikeOnAMeshAndOnOneDevice()
    {
        string gpt = Repo.Path("examples", "gpt.mpl");
        Run(
            "run",
            gpt,
            "-D",
            "L=2",
            "--mesh",
            "pp=1,dp=2,tp=2",
            "--steps",
            "10",
            "--seed",
            "3",
            "--out",
            P("mesh.npz")
        );
        Run("run", gpt, "-D", "L=2", "--mesh", "pp=1,dp=1,tp=1", "--steps", "10", "--seed", "3", "--out", P("one.npz"));
        var (mesh, one) = (Read(P("mesh.npz"), "loss"), Read(P("one.npz"), "loss"));
        Assert.Equal([10L], mesh.Shape);
        Assert.True(
            Distributed.MaxRelativeError(one, mesh) <= 1e-4,
            $"losses differ: {string.Join(", ", one.F!)} vs {string.Join(", ", mesh.F!)}"
        );
        Assert.True(one.F![9] < one.F[0], "the loss should fall");
    }

    /// <summary>On a fixed batch, 50 adam steps (lr 3e-4) on one device bring the transformer's loss down
    /// steadily.</summary>
    [Fact]
    public void TransformerLossFallsOverFiftySteps()
    {
        Run(
            "run",
            Repo.Path("examples", "gpt.mpl"),
            "-D",
            "L=1",
            "--mesh",
            "pp=1,dp=1,tp=1",
            "--steps",
            "50",
            "--out",
            P("loss.npz")
        );
        var loss = Read(P("loss.npz"), "loss").F!;
        Assert.True(loss[49] < 0.95 * loss[0], $"loss went from {loss[0]} to {loss[49]}");
        for (int i = 5; i < 50; i += 5)
            Assert.True(loss[i] < loss[i - 5], $"loss rose between steps {i - 4} and {i + 1}");
    }

    /// <summary>Four steps in one go give bit for bit the parameters and optimizer state of two steps, a save, a resume
    /// and two more.</summary>
    [Theory]
    [InlineData("0")]
    [InlineData("1")]
    [InlineData("3")]
    public void SaveAndResumeEqualsAnUninterruptedRun(string zero)
    {
        string gpt = Repo.Path("examples", "gpt.mpl");
        string[] common = ["-D", "L=1", "--mesh", "pp=1,dp=2,tp=2", "--zero", zero, "--seed", "1"];
        Run([
            "run",
            gpt,
            .. common,
            "--steps",
            "4",
            "--save-params",
            P("straight.npz"),
            "--out",
            P("straight_loss.npz"),
        ]);
        Run(["run", gpt, .. common, "--steps", "2", "--save-params", P("half.npz"), "--out", P("first.npz")]);
        Run([
            "run",
            gpt,
            .. common,
            "--steps",
            "2",
            "--params",
            P("half.npz"),
            "--save-params",
            P("resumed.npz"),
            "--out",
            P("second.npz"),
        ]);
        var straight = ArrayFile.Read(P("straight.npz"));
        var resumed = ArrayFile.Read(P("resumed.npz"));
        Assert.Equal(straight.Keys.Order(), resumed.Keys.Order());
        Assert.Contains("gpt.wte.adam_m", straight.Keys);
        Assert.Contains("optimizer.step", straight.Keys);
        Assert.Equal(4f, straight["optimizer.step"].Array.F![0]);
        foreach (var (key, value) in straight)
            Assert.True(value.Array.F!.SequenceEqual(resumed[key].Array.F!), $"{key} differs after resuming");
        var losses = Read(P("straight_loss.npz"), "loss").F!;
        Assert.Equal(losses, Read(P("first.npz"), "loss").F!.Concat(Read(P("second.npz"), "loss").F!).ToArray());
    }

    /// <summary>ZeRO-1 splits adam's state over dp and trains to the same losses.</summary>
    [Fact]
    public void ZeroStageOneSplitsTheStateAndChangesNoLoss()
    {
        string gpt = Repo.Path("examples", "gpt.mpl");
        var ir = Mplc.Run("compile", gpt, "-D", "L=1", "--mesh", "pp=1,dp=2,tp=2", "--zero", "1");
        Assert.True(ir.ExitCode == 0, ir.Stderr);
        Assert.Contains("path = \"gpt.block.0.mlp.w1.adam_m\"", ir.Stdout);
        Assert.Matches(
            @"layout = tensor<64x256xf32, shard\[dp, tp\]>, path = ""gpt\.block\.0\.mlp\.w1\.adam_m""",
            ir.Stdout
        );
        Run("run", gpt, "-D", "L=1", "--mesh", "pp=1,dp=2,tp=2", "--steps", "3", "--zero", "1", "--out", P("zero.npz"));
        Run("run", gpt, "-D", "L=1", "--mesh", "pp=1,dp=2,tp=2", "--steps", "3", "--out", P("plain.npz"));
        Assert.True(Distributed.MaxRelativeError(Read(P("plain.npz"), "loss"), Read(P("zero.npz"), "loss")) <= 1e-5);
    }

    [Fact]
    public void TrainingOptionsOnAForwardModelAreErrors()
    {
        var r = Mplc.Run("run", Repo.Path("examples", "mlp.mpl"), "--steps", "3");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error: --steps needs a training model", r.Stderr);
        r = Mplc.Run("run", Repo.Path("examples", "mlp.mpl"), "--zero", "4");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error: --zero must be 0, 1, 2 or 3, got 4", r.Stderr);
    }
}

/// <summary>@remat: the same training, less memory, more arithmetic.</summary>
public sealed class RematTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mplc-remat").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void RecomputingBlocksChangesNoLossAndLowersPeakMemory()
    {
        string remat = Path.Combine(_dir, "gpt_remat.mpl");
        File.WriteAllText(
            remat,
            File.ReadAllText(Repo.Path("examples", "gpt.mpl")).Replace("layer block(", "@remat\nlayer block(")
        );
        string[] flags = ["-D", "L=2", "--mesh", "pp=1,dp=2,tp=2", "--steps", "3"];
        var a = Mplc.Run(["run", remat, .. flags, "--out", Path.Combine(_dir, "a.npz")]);
        var b = Mplc.Run(["run", Repo.Path("examples", "gpt.mpl"), .. flags, "--out", Path.Combine(_dir, "b.npz")]);
        Assert.True(a.ExitCode == 0 && b.ExitCode == 0, a.Stderr + b.Stderr);
        Assert.Equal(
            ArrayFile.Read(Path.Combine(_dir, "b.npz"))["loss"].Array.F!,
            ArrayFile.Read(Path.Combine(_dir, "a.npz"))["loss"].Array.F!
        );

        var ir = Mplc.Run("compile", remat, "-D", "L=4", "-D", "B=64", "--mesh", "pp=1,dp=1,tp=1", "--stats");
        Assert.True(ir.ExitCode == 0, ir.Stderr);
        Assert.Contains("recompute = \"gpt.block.3\"", ir.Stdout);
        var m = System.Text.RegularExpressions.Regex.Match(
            ir.Stderr,
            @"@remat: peak memory ([\d.]+) MiB per device with recomputation, ([\d.]+) MiB without"
        );
        Assert.True(m.Success, ir.Stderr);
        double with = double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        double without = double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(with < 0.6 * without, $"peak {with} MiB with @remat, {without} MiB without");
    }

    private string Gpt(string attribute, string name)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(
            path,
            File.ReadAllText(Repo.Path("examples", "gpt.mpl")).Replace("layer block(", attribute + "\nlayer block(")
        );
        return path;
    }

    /// <summary>The instances of the block a compiled program recomputes, by the stage that runs them.</summary>
    private static SortedSet<string> Recomputed(string ir) =>
        new(
            System
                .Text.RegularExpressions.Regex.Matches(ir, "recompute = \"(gpt\\.block\\.\\d+)\"")
                .Select(m => m.Groups[1].Value)
        );

    /// <summary>
    /// @remat(first = k) recomputes the first k instances of the block in each pipeline stage (in the model without
    /// stages): on examples/gpt.mpl's mesh (two stages of two blocks) the first of each stage, and it trains like
    /// one device with the same parameters at the end.
    /// </summary>
    [Fact]
    public void RecomputingTheFirstInstancesOfEachStageTrainsLikeOneDevice()
    {
        string gpt = Gpt("@remat(first = 1)", "first.mpl");
        var one = Mplc.Run("compile", gpt, "--mesh", "pp=1,dp=1,tp=1");
        Assert.True(one.ExitCode == 0, one.Stderr);
        Assert.Equal(["gpt.block.0"], Recomputed(one.Stdout));
        var two = Mplc.Run("compile", gpt, "-D", "L=6", "--mesh", "pp=1,dp=1,tp=1");
        Assert.Equal(["gpt.block.0"], Recomputed(two.Stdout));
        var staged = Mplc.Run("compile", gpt, "--mesh", "pp=2,dp=1,tp=1");
        Assert.True(staged.ExitCode == 0, staged.Stderr);
        Assert.Equal(["gpt.block.0", "gpt.block.2"], Recomputed(staged.Stdout));
        string both = Gpt("@remat(first = 2)", "both.mpl");
        Assert.Equal(
            ["gpt.block.0", "gpt.block.1", "gpt.block.2", "gpt.block.3"],
            Recomputed(Mplc.Run("compile", both, "--mesh", "pp=2,dp=1,tp=1").Stdout)
        );

        string[] steps = ["--steps", "3", "--seed", "2"];
        string P(string f) => Path.Combine(_dir, f);
        var a = Mplc.Run(["run", gpt, .. steps, "--out", P("a.npz"), "--save-params", P("a-params.npz")]);
        var b = Mplc.Run([
            "run",
            Repo.Path("examples", "gpt.mpl"),
            "--mesh",
            "pp=1,dp=1,tp=1",
            .. steps,
            "--out",
            P("b.npz"),
            "--save-params",
            P("b-params.npz"),
        ]);
        Assert.True(a.ExitCode == 0 && b.ExitCode == 0, a.Stderr + b.Stderr);
        Distributed.AssertTrainsLikeOneDevice((P("a.npz"), P("b.npz")), (P("a-params.npz"), P("b-params.npz")));
    }

    [Theory]
    [InlineData("@remat(first = 0)", "first must be at least 1, got 0")]
    [InlineData("@remat(last = 2)", "@remat takes no arguments, or first = k")]
    [InlineData("@remat(first = 1, last = 2)", "@remat takes no arguments, or first = k")]
    [InlineData("@remat(first = \"x\")", "first must be a compile-time integer")]
    public void BadRematArgumentsAreLocatedErrors(string attribute, string message)
    {
        var r = Mplc.Run("compile", Gpt(attribute, "bad.mpl"));
        Assert.Equal(1, r.ExitCode);
        Assert.Matches(@"bad\.mpl:\d+:\d+: error: ", r.Stderr);
        Assert.Contains(message, r.Stderr);
        string model = Path.Combine(_dir, "model.mpl");
        File.WriteAllText(
            model,
            File.ReadAllText(Repo.Path("examples", "gpt.mpl")).Replace("model gpt(", "@remat(first = 1)\nmodel gpt(")
        );
        var m = Mplc.Run("compile", model);
        Assert.Equal(1, m.ExitCode);
        Assert.Contains("@remat(first = ...) applies to a layer", m.Stderr);
    }
}
