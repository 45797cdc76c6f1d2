using System.Text.Json;
using ParallelCompiler.Analysis;
using ParallelCompiler.Driver;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.IO;
using ParallelCompiler.Syntax;
using ParallelCompiler.Tests.Sharding;
using ParallelCompiler.Tests.Support;
using Xunit;

namespace ParallelCompiler.Tests.Pipeline;

/// <summary>
/// Pipelines end to end: every pipelined run against the same model on one device, the bubble of the compiled
/// schedules against the closed forms, the trace, the schedule table and the per-stage statistics, and the errors.
/// </summary>
public sealed class PipelineTests() : TempDirTest("mplc-pipe")
{
    private static Mplc.Result Ok(params string[] args)
    {
        var r = Mplc.Run(args);
        Assert.True(r.ExitCode == 0, $"mplc {string.Join(" ", args)} exited with {r.ExitCode}\n{r.Stdout}\n{r.Stderr}");
        return r;
    }

    /// <summary>examples/gpt.mpl with its text edited: the pipeline attribute and whether it trains.</summary>
    private string Gpt(string pipeline, bool train, string name)
    {
        string src = File.ReadAllText(Repo.Path("examples", "gpt.mpl"))
            .Replace("@pipeline(axis = pp, microbatches = 4, schedule = \"1f1b\")", pipeline);
        if (!train)
            src = src.Replace("train gpt optimizer adam(lr = 3e-4);", "");
        string path = P(name);
        File.WriteAllText(path, src);
        return path;
    }

    private static NDArray Read(string path, string key) => ArrayFile.Read(path)[key].Array;

    /// <summary>
    /// Three transformer blocks on two stages: the cut sends one activation forward and one gradient back (the
    /// residual stream), not the three projections inside an attention; with the blocks recomputed it falls between
    /// two blocks. The run still equals one device.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void StagesAreCutWhereOneActivationCrosses(bool remat)
    {
        string src = File.ReadAllText(Repo.Path("examples", "gpt.mpl"));
        if (remat)
            src = src.Replace("layer block(", "@remat\nlayer block(");
        string path = P($"cut-{remat}.mpl");
        File.WriteAllText(path, src);
        var r = Ok("compile", path, "-D", "L=3", "--print-ir-after=pipeline-transfers", "-o", "/dev/null");
        var transfers = r
            .Stderr.Split('\n')
            .Where(l => l.Contains("pipe.transfer") && !l.Contains("wte.grad") && !l.Contains("tensor<f32>"))
            .ToList();
        Assert.True(transfers.Count == 2, string.Join("\n", transfers));
        Assert.All(transfers, t => Assert.Contains(": (tensor<8x32x64xf32>)", t));
        if (remat)
            // Between blocks: the value the first stage sends is a block's result, not the residual inside it.
            Assert.DoesNotContain(transfers, t => t.Contains("%h_"));
        Ok("run", path, "-D", "L=3", "--check");
    }

    /// <summary>The transformer, forward only, with gpipe on pp=2, tp=2 gives the single-device result.</summary>
    [Fact]
    public void GptForwardWithGPipeOnPp2Tp2EqualsOneDevice()
    {
        string gpt = Gpt("@pipeline(axis = pp, microbatches = 4, schedule = \"gpipe\")", train: false, "fwd.mpl");
        var r = Ok("run", gpt, "--mesh", "pp=2,dp=1,tp=2", "--seed", "2", "--out", P("pipe.npz"));
        Assert.Contains("running on 4 simulated device(s), mesh pp=2,dp=1,tp=2", r.Stderr);
        Ok("run", gpt, "--mesh", "pp=1,dp=1,tp=1", "--seed", "2", "--out", P("one.npz"));
        var (pipe, one) = (Read(P("pipe.npz"), "out"), Read(P("one.npz"), "out"));
        Assert.True(Distributed.MaxRelativeError(one, pipe) <= 1e-5, $"{one.GetDouble(0)} vs {pipe.GetDouble(0)}");
    }

    /// <summary>The transformer of docs/language.md, trained with 1f1b on pp=2, dp=2, tp=2, gives the single-device
    /// losses.</summary>
    [Fact]
    public void GptTrainedWithOneFOneBOnPp2Dp2Tp2EqualsOneDeviceLosses()
    {
        string gpt = Repo.Path("examples", "gpt.mpl");
        Ok("run", gpt, "--steps", "5", "--seed", "4", "--out", P("pipe.npz"), "--save-params", P("pipe-params.npz"));
        Ok(
            "run",
            gpt,
            "--mesh",
            "pp=1,dp=1,tp=1",
            "--steps",
            "5",
            "--seed",
            "4",
            "--out",
            P("one.npz"),
            "--save-params",
            P("one-params.npz")
        );
        Distributed.AssertTrainsLikeOneDevice(
            (P("pipe.npz"), P("one.npz")),
            (P("pipe-params.npz"), P("one-params.npz"))
        );
    }

    /// <summary>Interleaved chunks, gpipe training, uneven user stages and more microbatches all train like one
    /// device.</summary>
    [Theory]
    [InlineData("@pipeline(axis = pp, microbatches = 4, schedule = \"interleaved\", chunks = 2)", "pp=2,dp=1,tp=2")]
    [InlineData("@pipeline(axis = pp, microbatches = 8, schedule = \"interleaved\", chunks = 2)", "pp=4,dp=1,tp=1")]
    [InlineData("@pipeline(axis = pp, microbatches = 2, schedule = \"gpipe\")", "pp=2,dp=2,tp=1")]
    [InlineData("@pipeline(axis = pp, microbatches = 8, schedule = \"1f1b\")", "pp=4,dp=1,tp=2")]
    public void OtherSchedulesTrainLikeOneDevice(string pipeline, string mesh)
    {
        string gpt = Gpt(pipeline, train: true, "g.mpl");
        Ok("run", gpt, "--mesh", mesh, "--steps", "3", "--seed", "1", "--out", P("pipe.npz"));
        Ok("run", gpt, "--mesh", "pp=1,dp=1,tp=1", "--steps", "3", "--seed", "1", "--out", P("one.npz"));
        var (pipe, one) = (Read(P("pipe.npz"), "loss"), Read(P("one.npz"), "loss"));
        Assert.True(
            Distributed.MaxRelativeError(one, pipe) <= 1e-5,
            $"losses differ: {string.Join(", ", one.F!)} vs {string.Join(", ", pipe.F!)}"
        );
    }

    private const string UnevenStages = """
        mesh m[pp = 2, dp = 2];
        const B = 8; const D = 16;
        layer dense(x: f32[B, D]) -> f32[B, D] {
          param w: f32[D, D];
          param b: f32[D] = zeros;
          return tanh(x @ w + b);
        }
        @pipeline(axis = pp, microbatches = 2, schedule = "1f1b")
        model net(x: f32[B, D] shard[dp, _], y: f32[B, D] shard[dp, _]) -> f32[] {
          let h = dense(x);
          h = dense(h);
          h = dense(h);
          stage;
          h = dense(h);
          let d = h - y;
          return mean(sum(d * d, 1), 0);
        }
        train net optimizer sgd(lr = 0.1, momentum = 0.9);
        """;

    /// <summary>Three layers on the first stage and one on the second, as the stage statement says, train like one
    /// device.</summary>
    [Fact]
    public void WorkTheSameForEveryMicrobatchRunsOnceBeforeTheSchedule()
    {
        // A vocabulary-split table is gathered for the embedding: once a step, not once a microbatch.
        File.WriteAllText(
            P("split.mpl"),
            File.ReadAllText(Repo.Path("examples", "gpt.mpl"))
                .Replace("param wte: f32[V, D];", "param wte: f32[V, D] shard[tp, _];")
        );
        var ir = Ok("compile", P("split.mpl")).Stdout;
        Assert.Matches(@"dist\.all_gather %gpt\.wte \{axes = \[""tp""\], dim = 0, phase = ""setup"", stage = 0\}", ir);
        var r = Ok("run", P("split.mpl"), "--check");
        Assert.Contains("equals one device", r.Stdout);
    }

    [Fact]
    public void UnevenUserStagesAreHonouredAndTrainLikeOneDevice()
    {
        File.WriteAllText(P("uneven.mpl"), UnevenStages);
        var ir = Ok("compile", P("uneven.mpl")).Stdout;
        // Stage 0 holds dense.0 to dense.2, stage 1 dense.3.
        Assert.Matches(@"path = ""net\.dense\.2\.w"", phase = ""setup"", stage = 0", ir);
        Assert.Matches(@"path = ""net\.dense\.3\.w"", phase = ""setup"", stage = 1", ir);
        Ok("run", P("uneven.mpl"), "--steps", "4", "--out", P("pipe.npz"));
        Ok("run", P("uneven.mpl"), "--mesh", "pp=1,dp=1", "--steps", "4", "--out", P("one.npz"));
        Assert.True(Distributed.MaxRelativeError(Read(P("one.npz"), "loss"), Read(P("pipe.npz"), "loss")) <= 1e-5);
    }

    /// <summary>A model of identical layers: the balanced split gives every stage the same number of layers.</summary>
    private string Identical(int layers, string pipeline, bool train)
    {
        string src = $$"""
            mesh m[pp = 4];
            const B = 32; const D = 64; const L = {{layers}};
            layer dense(x: f32[B, D]) -> f32[B, D] {
              param w: f32[D, D];
              return relu(x @ w);
            }
            {{pipeline}}
            model net(x: f32[B, D]) -> f32[] {
              // A trained scale before the layers, so the first layer's backward, like every other's, computes the
              // gradient of its input: the layers are identical in the backward pass too.
              param s: f32[D] = ones;
              let h = x * s;
              for i in 0..L { h = dense(h); }
              return sum(sum(h, 1), 0);
            }
            {{(train ? "train net optimizer sgd(lr = 0.01);" : "")}}
            """;
        string path = P($"identical-{Guid.NewGuid():N}.mpl");
        File.WriteAllText(path, src);
        return path;
    }

    private static Operation CompileToModule(string path, params string[] extra)
    {
        string outPath = Path.ChangeExtension(path, ".mplir");
        Ok(["compile", path, "-o", outPath, .. extra]);
        return Compilation.ParseIR(Compilation.ReadSource(outPath), new DiagnosticBag(), verify: true);
    }

    /// <summary>
    /// With uniform stages, the bubble of the compiled schedule, played out with the compiler's costs, is
    /// (p-1)/(m+p-1) for gpipe and 1f1b and (p-1)/(v*m+p-1) interleaved, within 2 percentage points.
    /// </summary>
    [Theory]
    [InlineData("gpipe", 2, 4, 1)]
    [InlineData("gpipe", 2, 8, 1)]
    [InlineData("gpipe", 4, 4, 1)]
    [InlineData("gpipe", 4, 8, 1)]
    [InlineData("1f1b", 2, 4, 1)]
    [InlineData("1f1b", 2, 8, 1)]
    [InlineData("1f1b", 4, 4, 1)]
    [InlineData("1f1b", 4, 8, 1)]
    [InlineData("interleaved", 2, 4, 2)]
    [InlineData("interleaved", 2, 8, 2)]
    [InlineData("interleaved", 4, 4, 2)]
    [InlineData("interleaved", 4, 8, 2)]
    public void BubbleOfIdenticalLayersMatchesTheClosedForm(string kind, int p, int m, int v)
    {
        foreach (bool train in new[] { false, true })
        {
            if (kind == "1f1b" && !train)
                continue; // forward-only 1f1b is gpipe
            string chunks = v > 1 ? $", chunks = {v}" : "";
            string path = Identical(
                p * v * 2,
                $"@pipeline(axis = pp, microbatches = {m}, schedule = \"{kind}\"{chunks})",
                train
            );
            var module = CompileToModule(path, "--mesh", $"pp={p}");
            var stats = PipelineStats.Of(module.EntryFunction()!)!;
            Assert.Equal(p, stats.Devices.Count);
            Assert.All(stats.Devices, d => Assert.Equal(v, d.Stages.Count));
            double expected = (p - 1.0) / (v * m + p - 1.0);
            foreach (var d in stats.Devices)
                Assert.True(
                    Math.Abs(d.Bubble - expected) <= 0.02,
                    $"{kind} p={p} m={m} v={v} train={train}: device {d.Device} idles {d.Bubble:P2}, expected "
                        + $"{expected:P2}"
                );
        }
    }

    /// <summary>GPipe holds every microbatch's activations at once; 1F1B at most p - s on device s.</summary>
    [Fact]
    public void OneFOneBHoldsFewerActivationsThanGPipe()
    {
        var gpipe = PipelineStats.Of(
            CompileToModule(Identical(8, "@pipeline(axis = pp, microbatches = 8, schedule = \"gpipe\")", true))
                .EntryFunction()!
        )!;
        var ofob = PipelineStats.Of(
            CompileToModule(Identical(8, "@pipeline(axis = pp, microbatches = 8, schedule = \"1f1b\")", true))
                .EntryFunction()!
        )!;
        for (int s = 0; s < 4; s++)
        {
            Assert.Equal(8, gpipe.Devices[s].PeakMicrobatches);
            Assert.Equal(4 - s, ofob.Devices[s].PeakMicrobatches);
            Assert.True(ofob.Devices[s].PeakActivationBytes < gpipe.Devices[s].PeakActivationBytes);
        }
        var r = Ok(
            "compile",
            Identical(8, "@pipeline(axis = pp, microbatches = 8, schedule = \"1f1b\")", true),
            "--stats",
            "-o",
            "/dev/null"
        );
        Assert.Contains("idle (bubble)", r.Stderr);
        Assert.Matches(@"0\s+0, 4\s+|0\s+0\s+", r.Stderr);
        Assert.Contains("4 microbatch(es)", r.Stderr);
        Assert.Contains("schedule 1f1b, 8 microbatch(es)", r.Stderr);
    }

    /// <summary>--schedule prints the IR's schedule as a device-by-slot table with its bubble.</summary>
    [Fact]
    public void ScheduleFlagPrintsTheTable()
    {
        var r = Ok("compile", Repo.Path("examples", "gpt.mpl"), "--schedule", "-o", "/dev/null");
        Assert.Contains("schedule 1f1b: 4 microbatch(es) over 2 pipeline device(s)", r.Stderr);
        Assert.Matches(@"\n0\s+F0\s+F1\s+B0\s+B0\s+F2\s+B1\s+B1\s+F3\s+B2\s+B2\s+B3\s+B3", r.Stderr);
        Assert.Matches(@"\n1\s+F0\s+B0\s+B0\s+F1\s+B1\s+B1\s+F2\s+B2\s+B2\s+F3\s+B3\s+B3", r.Stderr);
        Assert.Contains("bubble: device 0 20.0 %, device 1 20.0 %", r.Stderr);
        var plain = Mplc.Run("compile", Repo.Path("examples", "mlp.mpl"), "--schedule", "-o", "/dev/null");
        Assert.Equal(1, plain.ExitCode);
        Assert.Contains("error: --schedule: the program is not pipelined", plain.Stderr);
    }

    /// <summary>--trace writes a Chrome trace: a named track per device, its schedule's tasks in order, kernels, sends,
    /// receives and collectives.</summary>
    [Fact]
    public void TraceHasATrackPerDeviceWithTasksAndCommunication()
    {
        var r = Ok("run", Repo.Path("examples", "gpt.mpl"), "-D", "L=2", "--trace", P("trace.json"));
        Assert.Contains($"wrote {P("trace.json")}", r.Stdout);
        using var doc = JsonDocument.Parse(File.ReadAllText(P("trace.json")));
        var events = doc.RootElement.GetProperty("traceEvents").EnumerateArray().ToList();
        var names = events
            .Where(e => e.GetProperty("ph").GetString() == "M" && e.GetProperty("name").GetString() == "thread_name")
            .Select(e => e.GetProperty("args").GetProperty("name").GetString())
            .ToList();
        // Each device's track, and under it the track of its collectives in flight (gradient syncs are started).
        Assert.Equal(16, names.Count);
        Assert.Contains("device 5 (pp=1, dp=0, tp=1)", names);
        Assert.Contains("device 5 (pp=1, dp=0, tp=1) comm", names);
        var spans = events.Where(e => e.GetProperty("ph").GetString() == "X").ToList();
        for (int d = 0; d < 8; d++)
        {
            var mine = spans.Where(e => e.GetProperty("tid").GetInt32() == d).ToList();
            var cats = mine.Select(e => e.GetProperty("cat").GetString()).ToHashSet();
            Assert.Superset(new HashSet<string?> { "compute", "collective", "send", "recv", "task", "wait" }, cats);
            var tasks = mine.Where(e => e.GetProperty("cat").GetString() == "task")
                .OrderBy(e => e.GetProperty("ts").GetDouble())
                .Select(e => e.GetProperty("name").GetString()![..2])
                .ToList();
            string[] expected =
                d < 4
                    ? ["F0", "F1", "B0", "F2", "B1", "F3", "B2", "B3", "st"]
                    : ["F0", "B0", "F1", "B1", "F2", "B2", "F3", "B3", "st"];
            Assert.Equal(expected, tasks);
        }
        Assert.All(spans, e => Assert.True(e.GetProperty("dur").GetDouble() >= 0));
    }

    /// <summary>The balanced split keeps each stage's parameters under pipeline-stages' memory limit, or says none
    /// can.</summary>
    [Fact]
    public void MemoryLimitShapesTheSplit()
    {
        // Eight 16 KiB layers over two stages: balanced 4 + 4; a 80 KiB limit still allows it, a 48 KiB one cannot.
        string src = File.ReadAllText(Identical(8, "@pipeline(axis = pp, microbatches = 4)", false))
            .Replace("pp = 4", "pp = 2");
        File.WriteAllText(P("mem.mpl"), src);
        string pipeline = "shape-inference,canonicalize,cse,dce,pipeline-stages{memory-limit=81920}";
        var r = Ok("compile", P("mem.mpl"), $"--pass-pipeline={pipeline}");
        Assert.Matches(@"path = ""net\.dense\.3\.w"", (phase = ""setup"", )?stage = 0", r.Stdout);
        Assert.Matches(@"path = ""net\.dense\.4\.w"", (phase = ""setup"", )?stage = 1", r.Stdout);
        var bad = Mplc.Run(
            "compile",
            P("mem.mpl"),
            "--pass-pipeline=shape-inference,pipeline-stages{memory-limit=49152}"
        );
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("no split into 2 stages keeps every stage's parameters under 49152 bytes", bad.Stderr);
    }

    [Fact]
    public void PipelineInputErrorsAreClear()
    {
        var notDividing = Mplc.Run("run", Repo.Path("examples", "gpt.mpl"), "-D", "B=6");
        Assert.Equal(1, notDividing.ExitCode);
        Assert.Contains(
            "gpt.mpl:33:7: error: @pipeline: the batch dimension of 'tokens' (6, 3 per device) does not "
                + "split into 4 microbatches",
            notDividing.Stderr
        );

        string interleaved = Gpt(
            "@pipeline(axis = pp, microbatches = 3, schedule = \"interleaved\", chunks = 2)",
            train: true,
            "i.mpl"
        );
        var r = Mplc.Run("compile", interleaved, "-D", "B=6", "--mesh", "pp=2,dp=1,tp=1", "-o", "/dev/null");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(
            "error: @pipeline: interleaved: 3 microbatches are not a multiple of the 2 pipeline devices",
            r.Stderr
        );

        File.WriteAllText(P("stages.mpl"), UnevenStages.Replace("pp = 2", "pp = 4"));
        r = Mplc.Run("compile", P("stages.mpl"), "-o", "/dev/null");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(
            "stages.mpl:13:3: error: 1 'stage;' statement(s) make 2 stages, but @pipeline over pp = 4 " + "needs 4",
            r.Stderr
        );

        // A value of the whole batch in the middle of the model: microbatches are not independent.
        File.WriteAllText(
            P("mix.mpl"),
            """
            mesh m[pp = 2];
            @pipeline(axis = pp, microbatches = 2)
            model f(x: f32[4, 8]) -> f32[] {
              param w: f32[8, 8];
              let c = x - mean(x, 0);
              return sum(sum(c @ w, 1), 0);
            }
            """
        );
        r = Mplc.Run("compile", P("mix.mpl"), "-o", "/dev/null");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(
            "mix.mpl:5:13: error: pipelining: tensor.sub reads 'x' of a single microbatch together with "
                + "values summed over all of them",
            r.Stderr
        );
    }

    /// <summary>A schedule edited in the IR is verified: every task once, no deadlock, one order per device.</summary>
    [Theory]
    [InlineData(
        "[[\"F0\", \"F1\", \"B0\", \"B1\"], [\"F0\", \"B0\", \"F1\"]]",
        "device 1 must run each of its 4 tasks exactly once, got [F0, B0, F1]"
    )]
    [InlineData("[[\"F0\", \"F1\", \"B0\", \"B1\"], [\"B0\", \"F0\", \"F1\", \"B1\"]]", "the order deadlocks")]
    [InlineData("[[\"F0\", \"F1\", \"B0\", \"B1\"]]", "1 device order(s) for the 2 devices of pipeline axis 'pp'")]
    [InlineData("[[\"F0\", \"F1\", \"B0\", \"X1\"], [\"F0\", \"B0\", \"F1\", \"B1\"]]", "'X1' is not a task label")]
    public void BadSchedulesAreVerifierErrors(string order, string message)
    {
        string src = File.ReadAllText(
            Gpt("@pipeline(axis = pp, microbatches = 2, schedule = \"1f1b\")", train: true, "s.mpl")
        );
        File.WriteAllText(P("s.mpl"), src);
        Ok("compile", P("s.mpl"), "-D", "L=1", "--mesh", "pp=2,dp=1,tp=1", "-o", P("s.mplir"));
        string ir = File.ReadAllText(P("s.mplir"));
        int at = ir.IndexOf("order = ", StringComparison.Ordinal);
        int end = ir.IndexOf("]]", at, StringComparison.Ordinal) + 2;
        File.WriteAllText(P("bad.mplir"), ir[..at] + "order = " + order + ir[end..]);
        var r = Mplc.Run("opt", P("bad.mplir"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(message, r.Stderr);
        // The unedited schedule round-trips and runs from the text.
        Assert.Equal(ir, Ok("opt", P("s.mplir")).Stdout);
        Ok("run", P("s.mplir"), "--steps", "2");
    }
}
