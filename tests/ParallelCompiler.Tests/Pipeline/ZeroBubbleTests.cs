using System.Text.RegularExpressions;
using ParallelCompiler.Analysis;
using ParallelCompiler.Cost;
using ParallelCompiler.Driver;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Syntax;
using ParallelCompiler.Tests.Sharding;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Pipeline;

/// <summary>
/// The zero-bubble schedule zb-h1 end to end: the backward split into B and W trains like one device, its compiled
/// bubble against the paper's closed form and against 1F1B's, the activations it holds, the reports that show B
/// and W, and the errors.
/// </summary>
public sealed class ZeroBubbleTests() : TempDirTest("mplc-zb")
{
    private const string OneFOneB = "@pipeline(axis = pp, microbatches = 4, schedule = \"1f1b\")";

    private static Mplc.Result Ok(params string[] args)
    {
        var r = Mplc.Run(args);
        Assert.True(r.ExitCode == 0, $"mplc {string.Join(" ", args)} exited with {r.ExitCode}\n{r.Stdout}\n{r.Stderr}");
        return r;
    }

    /// <summary>examples/gpt.mpl with another pipeline attribute.</summary>
    private string Gpt(string pipeline, string name)
    {
        string path = P(name);
        File.WriteAllText(path, File.ReadAllText(Repo.Path("examples", "gpt.mpl")).Replace(OneFOneB, pipeline));
        return path;
    }

    private static string Zb(int m) => $"@pipeline(axis = pp, microbatches = {m}, schedule = \"zb-h1\")";

    private static NDArray Read(string path, string key) => ArrayFile.Read(path)[key].Array;

    private Operation Compile(string path, params string[] extra)
    {
        string outPath = Path.ChangeExtension(path, ".mplir");
        Ok(["compile", path, "-o", outPath, .. extra]);
        return Compilation.ParseIR(Compilation.ReadSource(outPath), new DiagnosticBag(), verify: true);
    }

    /// <summary>
    /// examples/gpt.mpl with zb-h1 on its mesh (pp=2, dp=2, tp=2) gives the single-device losses and ends with the
    /// same parameters, the tied embedding included.
    /// </summary>
    [Fact]
    public void GptWithZeroBubbleH1EqualsOneDevice()
    {
        string gpt = Gpt(Zb(4), "zb.mpl");
        string[] steps = ["--steps", "4", "--seed", "3"];
        Ok(["run", gpt, .. steps, "--out", P("zb.npz"), "--save-params", P("zb-params.npz")]);
        Ok([
            "run",
            gpt,
            "--mesh",
            "pp=1,dp=1,tp=1",
            .. steps,
            "--out",
            P("one.npz"),
            "--save-params",
            P("one-params.npz"),
        ]);
        Distributed.AssertTrainsLikeOneDevice((P("zb.npz"), P("one.npz")), (P("zb-params.npz"), P("one-params.npz")));
    }

    /// <summary>examples/gpt.mpl with zb-h2 on its mesh (pp=2, dp=2, tp=2) gives the single-device losses and
    /// parameters; the first device holds 2p - 1 = 3 microbatches between F and W (zb-h1: 2).</summary>
    [Fact]
    public void GptWithZeroBubbleH2EqualsOneDevice()
    {
        string gpt = Gpt("@pipeline(axis = pp, microbatches = 4, schedule = \"zb-h2\")", "zb2.mpl");
        string[] steps = ["--steps", "3", "--seed", "3"];
        Ok(["run", gpt, .. steps, "--out", P("zb2.npz"), "--save-params", P("zb2-params.npz")]);
        string[] one = ["--mesh", "pp=1,dp=1,tp=1", .. steps];
        Ok(["run", gpt, .. one, "--out", P("one.npz"), "--save-params", P("one-params.npz")]);
        Distributed.AssertTrainsLikeOneDevice((P("zb2.npz"), P("one.npz")), (P("zb2-params.npz"), P("one-params.npz")));
        var stats = PipelineStats.Of(Compile(gpt, "-D", "L=2").EntryFunction()!)!;
        Assert.Equal(("zb-h2", 4, 1), stats.Schedule);
        Assert.Equal(3, stats.Devices[0].PeakMicrobatches);
        var table = Ok("compile", gpt, "--schedule", "-o", "/dev/null").Stderr;
        Assert.Contains("schedule zb-h2: 4 microbatch(es) over 2 pipeline device(s)", table);
        Assert.Contains("W3", table);
    }

    /// <summary>Four stages with tensor parallelism, more microbatches, and fewer microbatches than stages.</summary>
    [Theory]
    [InlineData(8, "pp=4,dp=1,tp=2")]
    [InlineData(2, "pp=4,dp=1,tp=1")]
    public void ZeroBubbleH1TrainsLikeOneDevice(int m, string mesh)
    {
        string gpt = Gpt(Zb(m), "g.mpl");
        Ok("run", gpt, "--mesh", mesh, "--steps", "3", "--seed", "1", "--out", P("zb.npz"));
        Ok("run", gpt, "--mesh", "pp=1,dp=1,tp=1", "--steps", "3", "--seed", "1", "--out", P("one.npz"));
        var (zb, one) = (Read(P("zb.npz"), "loss"), Read(P("one.npz"), "loss"));
        Assert.True(
            Distributed.MaxRelativeError(one, zb) <= 1e-5,
            $"losses differ: {string.Join(", ", one.F!)} vs {string.Join(", ", zb.F!)}"
        );
    }

    /// <summary>
    /// The split: on the last stage B holds what the gradient sent back needs and W the rest; the first stage sends
    /// no gradient, so all of its backward is W. Every op of phase weight belongs to a stage, and no B op reads a W
    /// op's result.
    /// </summary>
    [Fact]
    public void TheBackwardSplitsIntoInputAndWeightGradients()
    {
        var func = Compile(Gpt(Zb(4), "split.mpl"), "-D", "L=2").EntryFunction()!;
        var ops = func.Regions[0].Entry.Operations.ToList();
        string Phase(Operation o) => o.GetAttr("phase") is StringAttr s ? s.Value : "forward";
        long Stage(Operation o) => o.GetAttr("stage") is IntAttr i ? i.Value : -1;
        var weight = ops.Where(o => Phase(o) == "weight").ToList();
        Assert.Contains(weight, o => Stage(o) == 0);
        Assert.Contains(weight, o => Stage(o) == 1);
        Assert.DoesNotContain(ops, o => Phase(o) == "backward" && Stage(o) == 0);
        Assert.Contains(ops, o => o.Name == "pipe.send_start" && Phase(o) == "backward" && Stage(o) == 1);
        Assert.Contains(ops, o => o.Name == "tensor.matmul" && Phase(o) == "backward" && Stage(o) == 1);
        foreach (var w in weight)
        foreach (var r in w.Results)
            Assert.DoesNotContain(r.Uses, u => Phase(u.Op) == "backward");
        // A weight gradient is summed over the microbatches after the schedule.
        Assert.Contains(
            ops,
            o =>
                o.Name == "dist.all_reduce"
                && Phase(o) == "step"
                && o.Operands[0].DefiningOp is { } d
                && weight.Contains(d)
        );
    }

    /// <summary>
    /// The done-when of the schedule: examples/gpt.mpl's compiled zb-h1 bubble is under half of 1F1B's at the same
    /// microbatches, in the schedule table's slots (F, B and W one each: (p-1)/(3m+p-1) against (p-1)/(m+p-1)), in
    /// the compiler's FLOP estimate (on the busiest device, which sets the step; the other idles for the stages'
    /// imbalance too) and, by less, in the cost model's step.
    /// </summary>
    [Fact]
    public void GptBubbleIsUnderHalfOfOneFOneBs()
    {
        var zb = Ok("compile", Gpt(Zb(4), "z.mpl"), "--schedule", "-o", "/dev/null");
        var ofob = Ok("compile", Repo.Path("examples", "gpt.mpl"), "--schedule", "-o", "/dev/null");
        Assert.Contains("bubble: device 0 7.7 %, device 1 7.7 %", zb.Stderr);
        Assert.Contains("bubble: device 0 20.0 %, device 1 20.0 %", ofob.Stderr);

        var zbModule = Compile(Gpt(Zb(4), "zb.mpl"));
        var ofobModule = Compile(Gpt(OneFOneB, "ofob.mpl"));
        var zbStats = PipelineStats.Of(zbModule.EntryFunction()!)!;
        var ofobStats = PipelineStats.Of(ofobModule.EntryFunction()!)!;
        double Bubble(PipelineStats s) => s.Devices.Min(d => d.Bubble);
        Assert.True(
            Bubble(zbStats) < 0.5 * Bubble(ofobStats),
            $"zb-h1 idles {Bubble(zbStats):P1}, 1f1b {Bubble(ofobStats):P1}"
        );
        Assert.True(zbStats.Timeline.Makespan < ofobStats.Timeline.Makespan);

        var cluster = Cluster.Presets["h100-sxm"];
        var (zbCost, ofobCost) = (CostModel.Of(zbModule, cluster), CostModel.Of(ofobModule, cluster));
        Assert.True(zbCost.BubbleSeconds < ofobCost.BubbleSeconds && zbCost.StepSeconds < ofobCost.StepSeconds);
        Assert.All(zbCost.StageWeightSeconds, w => Assert.True(w > 0));
        Assert.All(ofobCost.StageWeightSeconds, w => Assert.Equal(0, w));
    }

    /// <summary>A model of identical layers, so that every stage costs the same.</summary>
    private string Identical(int p, int m, string schedule = "zb-h1")
    {
        string src = $$"""
            mesh m[pp = {{p}}];
            const B = 32; const D = 64; const L = {{2 * p}};
            layer dense(x: f32[B, D]) -> f32[B, D] {
              param w: f32[D, D];
              return relu(x @ w);
            }
            @pipeline(axis = pp, microbatches = {{m}}, schedule = "{{schedule}}")
            model net(x: f32[B, D]) -> f32[] {
              param s: f32[D] = ones;
              let h = x * s;
              for i in 0..L { h = dense(h); }
              return sum(sum(h, 1), 0);
            }
            train net optimizer sgd(lr = 0.01);
            """;
        string path = P($"identical-{schedule}-{p}-{m}.mpl");
        File.WriteAllText(path, src);
        return path;
    }

    /// <summary>
    /// With identical stages, where a layer's B (x @ w's input gradient) and W (its weight gradient) cost what its
    /// forward does, the compiled schedule played with the compiler's costs idles (p-1)/(3m+p-1) of the step, the
    /// paper's (p-1)(F+B-W) over m(F+B+W) + (p-1)(F+B-W), within 2 percentage points; every device holds p
    /// microbatches between F and W, as 1F1B's first device does.
    /// </summary>
    [Theory]
    [InlineData(2, 4)]
    [InlineData(2, 8)]
    [InlineData(4, 4)]
    [InlineData(4, 8)]
    public void BubbleOfIdenticalLayersMatchesThePapersForm(int p, int m)
    {
        var stats = PipelineStats.Of(Compile(Identical(p, m)).EntryFunction()!)!;
        Assert.Equal(("zb-h1", m, 1), stats.Schedule);
        double expected = (p - 1.0) / (3 * m + p - 1.0);
        foreach (var d in stats.Devices)
        {
            Assert.True(
                Math.Abs(d.Bubble - expected) <= 0.02,
                $"p={p} m={m}: device {d.Device} idles {d.Bubble:P2}, expected {expected:P2}"
            );
            Assert.Equal(p, d.PeakMicrobatches);
            Assert.True(d.WeightFlops > 0);
        }
    }

    /// <summary>
    /// zb-h2 on the same identical stages: from m = 2p - 1 on, each device idles only the fill and drain, (p - 1)F
    /// of m(F + B + W) + (p - 1)F, (p - 1)/(3m + p - 1) where F, B and W cost alike (the paper's zero bubble besides
    /// them), within 2 percentage points (the compiled B and W do not cost quite alike: at p = 2 the step is then
    /// 0.03 % longer than zb-h1's); the first device holds 2p - 1 microbatches between F and W, no device more.
    /// </summary>
    [Theory]
    [InlineData(2, 4)]
    [InlineData(2, 8)]
    [InlineData(4, 8)]
    public void ZeroBubbleH2OfIdenticalLayersIdlesOnlyTheFillAndDrain(int p, int m)
    {
        var stats = PipelineStats.Of(Compile(Identical(p, m, "zb-h2")).EntryFunction()!)!;
        Assert.Equal(("zb-h2", m, 1), stats.Schedule);
        double expected = (p - 1.0) / (3 * m + p - 1.0);
        foreach (var d in stats.Devices)
        {
            Assert.True(
                Math.Abs(d.Bubble - expected) <= 0.02,
                $"p={p} m={m}: device {d.Device} idles {d.Bubble:P2}, expected {expected:P2}"
            );
            Assert.InRange(d.PeakMicrobatches, 1, 2 * p - 1);
        }
        Assert.Equal(2 * p - 1, stats.Devices[0].PeakMicrobatches);
    }

    /// <summary>--schedule shows B and W a slot each; --stats shows their FLOPs apart.</summary>
    [Fact]
    public void ReportsShowBAndW()
    {
        string gpt = Gpt(Zb(4), "r.mpl");
        var r = Ok("compile", gpt, "--schedule", "-o", "/dev/null");
        Assert.Contains(
            "schedule zb-h1: 4 microbatch(es) over 2 pipeline device(s); F<i> forward, B<i> input gradient, W<i> "
                + "weight gradient of microbatch i; each takes a slot",
            r.Stderr
        );
        Assert.Matches(@"\n0\s+F0\s+F1\s+B0\s+W0\s+F2\s+B1\s+W1\s+F3\s+B2\s+W2\s+B3\s+W3\s*\n", r.Stderr);
        Assert.Matches(@"\n1\s+F0\s+B0\s+F1\s+B1\s+W0\s+F2\s+B2\s+W1\s+F3\s+B3\s+W2\s+W3\s*\n", r.Stderr);
        var stats = Ok("compile", gpt, "--stats", "-o", "/dev/null");
        Assert.Matches(@"forward FLOPs\s+B FLOPs\s+W FLOPs", stats.Stderr);
        Assert.Contains("schedule zb-h1, 4 microbatch(es)", stats.Stderr);
        Assert.Contains("2 microbatch(es)", stats.Stderr);
    }

    /// <summary>An unknown schedule is a located error with a caret.</summary>
    [Fact]
    public void AnUnknownScheduleIsALocatedError()
    {
        string gpt = Gpt("@pipeline(axis = pp, microbatches = 4, schedule = \"zb-h3\")", "bad.mpl");
        var r = Mplc.Run("compile", gpt, "-o", "/dev/null");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(
            "bad.mpl:32:51: error: schedule must be \"gpipe\", \"1f1b\", \"interleaved\", \"zb-h1\" or \"zb-h2\"",
            r.Stderr
        );
        Assert.Matches(@"\n\s*\^", r.Stderr);
        var chunks = Mplc.Run(
            "compile",
            Gpt("@pipeline(axis = pp, microbatches = 4, schedule = \"zb-h1\", chunks = 2)", "c.mpl"),
            "-o",
            "/dev/null"
        );
        Assert.Equal(1, chunks.ExitCode);
        Assert.Contains("c.mpl:32:1: error: chunks applies only to schedule = \"interleaved\"", chunks.Stderr);
    }

    /// <summary>
    /// An edited zb-h1 schedule is verified: W tasks are needed where the program has weight-gradient ops, a W
    /// before its own B deadlocks, and the unedited schedule round-trips and runs from the text.
    /// </summary>
    [Theory]
    [InlineData(
        "[[\"F0\", \"F1\", \"B0\", \"B1\"], [\"F0\", \"B0\", \"F1\", \"B1\"]]",
        "the program splits its backward (ops of phase 'weight') but the order has no W tasks"
    )]
    [InlineData(
        "[[\"F0\", \"F1\", \"W0\", \"B0\", \"B1\", \"W1\"], [\"F0\", \"B0\", \"F1\", \"B1\", \"W0\", \"W1\"]]",
        "the order deadlocks"
    )]
    [InlineData(
        "[[\"F0\", \"F1\", \"B0\", \"W0\", \"B1\"], [\"F0\", \"B0\", \"F1\", \"B1\", \"W0\", \"W1\"]]",
        "device 0 must run each of its 6 tasks exactly once, got [F0, F1, B0, W0, B1]"
    )]
    public void BadZeroBubbleSchedulesAreVerifierErrors(string order, string message)
    {
        Ok("compile", Gpt(Zb(2), "s.mpl"), "-D", "L=1", "--mesh", "pp=2,dp=1,tp=1", "-o", P("s.mplir"));
        string ir = File.ReadAllText(P("s.mplir"));
        Assert.Matches(new Regex(@"order = \[\[""F0"", ""F1"", ""B0"", ""W0"", ""B1"", ""W1""\]"), ir);
        int at = ir.IndexOf("order = ", StringComparison.Ordinal);
        int end = ir.IndexOf("]]", at, StringComparison.Ordinal) + 2;
        File.WriteAllText(P("bad.mplir"), ir[..at] + "order = " + order + ir[end..]);
        var r = Mplc.Run("opt", P("bad.mplir"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(message, r.Stderr);
        Assert.Equal(ir, Ok("opt", P("s.mplir")).Stdout);
        Ok("run", P("s.mplir"), "--steps", "2");
    }

    /// <summary>A bundle carries the W tasks in its manifest and program, and the weight-gradient instructions apart
    /// from the backward ones.</summary>
    [Fact]
    public void ABundleCarriesTheWTasks()
    {
        string path = P("zb.mplc");
        Ok("compile", Gpt(Zb(4), "b.mpl"), "-D", "L=2", "-o", path);
        var m = ParallelCompiler.Runtime.Model.ProgramManifest.FromJson(
            File.ReadAllText(Path.Combine(path, "manifest.json"))
        );
        Assert.Equal("zb-h1", m.Schedule!.Kind);
        Assert.Equal(["F0", "F1", "B0", "W0", "F2", "B1", "W1", "F3", "B2", "W2", "B3", "W3"], m.Schedule.Order[0]);
        var program = ParallelCompiler
            .Runtime.Model.Bundle.Open(path)
            .Program(n => new ParallelCompiler.Runtime.Distributed.KernelRef(n));
        Assert.Equal(m.Schedule.Order, program.Schedule!.Select(d => d.Select(t => t.Label(1)).ToArray()).ToArray());
        Assert.Contains(program.Instructions, i => i.Weight && !i.Backward && !i.PerStep);
        Assert.Contains(program.Instructions, i => i.Backward && !i.Weight);
    }
}
