using System.Globalization;
using System.Text.RegularExpressions;
using ParallelCompiler.Cost;
using ParallelCompiler.Lowering;
using ParallelCompiler.Passes;
using ParallelCompiler.Passes.Infrastructure;
using ParallelCompiler.Planner;
using ParallelCompiler.Syntax;
using ParallelCompiler.Tests.Support;
using Parquet.Serialization;
using Xunit;

namespace ParallelCompiler.Tests.Planner;

/// <summary>
/// mplc plan: plans that compile and run to the single-device result, plans for models that are not transformers,
/// the planner's rating against the cost model of the whole compiled plan, the exported dataset, and bad arguments.
/// The Megatron pattern is checked by FileCheck (tests/ir/planner-megatron.mplir).
/// </summary>
public partial class PlannerTests() : TempDirTest("mplc-plan")
{
    private static readonly string Plain = Repo.Path("tests", "ir", "inputs", "gpt-plain.mpl");

    /// <summary>A model file with its mesh and shardings taken out.</summary>
    private string Unplanned(string example)
    {
        string text = File.ReadAllText(Repo.Path("examples", example));
        text = ShardRegex().Replace(text, "");
        text = PlanLineRegex().Replace(text, "");
        string path = P(example);
        File.WriteAllText(path, text);
        return path;
    }

    [GeneratedRegex(@" shard\[[^\]]*\]")]
    private static partial Regex ShardRegex();

    [GeneratedRegex(@"^(mesh .*|@pipeline.*)\n", RegexOptions.Multiline)]
    private static partial Regex PlanLineRegex();

    [GeneratedRegex(@"^step (\d+)/\d+\s+loss (\S+)", RegexOptions.Multiline)]
    private static partial Regex LossRegex();

    /// <summary>The loss of every step, as mplc run prints it.</summary>
    private static double[] Losses(Mplc.Result r)
    {
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        return LossRegex()
            .Matches(r.Stdout + r.Stderr)
            .Select(m => double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture))
            .ToArray();
    }

    /// <summary>Plans <paramref name="model"/> (the best plan compiled whole and costed), writes the plan, trains it
    /// on simulated devices, and compares every step's loss with the model trained on one device.</summary>
    private string PlanRunsAsOneDevice(
        string model,
        int gpus,
        string? mesh,
        int steps,
        string cluster = "a100-80g-selene"
    )
    {
        string plan = P("plan.mpl");
        var args = new List<string>
        {
            "--gpus",
            gpus.ToString(CultureInfo.InvariantCulture),
            "--time-limit",
            "30",
            "-o",
            plan,
        };
        if (mesh != null)
            args.AddRange(["--mesh", mesh]);
        var planned = Mplc.Run(["plan", model, "--cluster", cluster, .. args]);
        Assert.True(planned.ExitCode == 0, planned.Stdout + planned.Stderr);
        Assert.Contains("#1 ", planned.Stdout);
        Assert.Contains("why: ", planned.Stdout);
        // The best plan is compiled whole and costed before it is written, and fits there.
        Assert.Matches(@"#1 [^\n]*\n[^\n]*\n[^\n]*\n  compiled whole and costed: step ", planned.Stdout);
        string text = File.ReadAllText(plan);
        string s = steps.ToString(CultureInfo.InvariantCulture);
        var zero = System.Text.RegularExpressions.Regex.Match(text, @"run it with --zero (\d)");
        var run = zero.Success
            ? Mplc.Run("run", plan, "--steps", s, "--zero", zero.Groups[1].Value)
            : Mplc.Run("run", plan, "--steps", s);
        var distributed = Losses(run);
        var single = Losses(Mplc.Run("run", model, "--steps", s));
        Assert.Equal(steps, distributed.Length);
        for (int i = 0; i < steps; i++)
            Assert.True(
                Math.Abs(distributed[i] - single[i]) <= 1e-4 * Math.Max(1, Math.Abs(single[i])),
                $"step {i + 1}: planned {distributed[i]}, one device {single[i]}\n{text}"
            );
        return text;
    }

    /// <summary>A wide MLP whose parameter state fits a tiny GPU only when ZeRO-3 splits all of it over dp: the
    /// planner chooses ZeRO-3, says so, and the plan written trains as one device under <c>--zero 3</c>.</summary>
    [Fact]
    public void WhereOnlyZeroThreeFitsThePlanUsesItAndTrainsAsOneDevice()
    {
        File.WriteAllText(
            P("wide.mpl"),
            """
            const B = 16; const D = 128; const H = 1024;
            model wide(x: f32[B, D], y: f32[B, D]) -> f32[] {
              param w1: f32[D, H];
              param w2: f32[H, D];
              let e = gelu(x @ w1) @ w2 - y;
              return mean(e * e);
            }
            train wide optimizer adam(lr = 0.01);

            """
        );
        // 1 MiB of parameters (4 MiB with the gradient and adam's moments) on GPUs of 2 MiB.
        File.WriteAllText(
            P("tiny.json"),
            """
            { "name": "tiny", "nodes": 1, "gpus_per_node": 8, "peak_tflops": { "fp32": 10, "fp16": 40, "bf16": 40 },
              "hbm_gib": 0.00195, "hbm_gbps": 1000, "nvlink_gbps": 100, "nvlink_latency_us": 1, "ib_links_per_node": 1,
              "ib_link_gbps": 10, "ib_latency_us": 10,
              "efficiency": { "matmul": 0.5, "matmul_half_dim": 100, "memory": 0.5, "network": 0.5,
                              "kernel_launch_us": 2 } }
            """
        );
        string text = PlanRunsAsOneDevice(P("wide.mpl"), 8, "tp=1,pp=1", 2, P("tiny.json"));
        Assert.Contains("Compile and run it with --zero 3.", text);
        Assert.Contains("mesh grid[pp = 1, dp = 8, tp = 1];", text);
    }

    [Fact]
    public void APipelinedTensorParallelPlanOfTheTransformerTrainsAsOneDevice()
    {
        string text = PlanRunsAsOneDevice(Plain, 8, "tp=2,pp=2", 3);
        Assert.Contains("mesh grid[pp = 2, dp = 2, tp = 2];", text);
        Assert.Contains("@pipeline(axis = pp", text);
        Assert.Contains("shard[", text);
    }

    [Fact]
    public void ASelectivelyRecomputedPlanIsWrittenOnItsLayerAndTrainsAsOneDevice()
    {
        var src = SourceText.Load(Plain);
        var cluster = Cluster.Presets["a100-80g-selene"];
        var model = ModelSource.Read(src, new CompileOptions());
        var plan = new Plan(1, 2, 2, 2, "1f1b", 1, false, 0, new Dictionary<string, int>()) { Selective = "attention" };
        string text = model.Write(plan);
        Assert.Contains("@remat\nlayer attention", text);
        Assert.Single(Regex.Matches(text, "@remat"));
        Assert.Contains("recomputing attention", plan.Summary);
        string path = P("selective.mpl");
        File.WriteAllText(path, text);
        var distributed = Losses(Mplc.Run("run", path, "--steps", "2"));
        var single = Losses(Mplc.Run("run", Plain, "--steps", "2"));
        Assert.Equal(single.Length, distributed.Length);
        for (int i = 0; i < single.Length; i++)
            Assert.Equal(single[i], distributed[i], 4);
        // The planner rates it from profiles compiled with the layer recomputed.
        var rated = PlanSearch
            .Create(src, new PlanRequest(cluster, 4, null, 30, new CompileOptions()), Registry())
            .Rate(plan, 2);
        Assert.True(rated.Viable, rated.Pruned);
    }

    /// <summary>A zero-bubble plan is written as the schedule <c>zb-h1</c>, trains as one device, and is rated
    /// with its weight gradients deferred: under the bubble of the same plan with 1F1B.</summary>
    [Fact]
    public void AZeroBubblePlanIsWrittenAndTrainsAsOneDevice()
    {
        var plan = new Plan(1, 2, 2, 2, "zb-h1", 1, false, 0, new Dictionary<string, int>());
        WrittenAndTrainsAsOneDevice(plan, "@pipeline(axis = pp, microbatches = 2, schedule = \"zb-h1\")", "zb.mpl");
        var planner = LargerGptPlanner();
        var zb = planner.Rate(plan with { Pp = 4, Dp = 1, Microbatches = 8 }, 4);
        var oneF = planner.Rate(plan with { Pp = 4, Dp = 1, Microbatches = 8, Schedule = "1f1b" }, 4);
        Assert.True(zb.Viable && oneF.Viable, zb.Pruned ?? oneF.Pruned);
        Assert.True(
            zb.BubbleSeconds < 0.7 * oneF.BubbleSeconds && zb.StepSeconds < oneF.StepSeconds,
            $"zb-h1 bubble {zb.BubbleSeconds}, step {zb.StepSeconds}; 1f1b {oneF.BubbleSeconds}, {oneF.StepSeconds}"
        );
    }

    // The plain model written with `plan` holds `annotation`, and trains 3 steps as one device does.
    private void WrittenAndTrainsAsOneDevice(Plan plan, string annotation, string file)
    {
        string text = ModelSource.Read(SourceText.Load(Plain), new CompileOptions()).Write(plan);
        Assert.Contains(annotation, text);
        string path = P(file);
        File.WriteAllText(path, text);
        var distributed = Losses(Mplc.Run("run", path, "--steps", "3"));
        var single = Losses(Mplc.Run("run", Plain, "--steps", "3"));
        Assert.Equal(3, distributed.Length);
        for (int i = 0; i < single.Length; i++)
            Assert.Equal(single[i], distributed[i], 4);
    }

    // The planner on the plain model at D = 512, S = 256, B = 32, L = 8, on 4 GPUs of a100-80g-selene.
    private static PlanSearch LargerGptPlanner()
    {
        var options = new CompileOptions();
        foreach (var (k, v) in new[] { ("D", 512L), ("S", 256L), ("B", 32L), ("L", 8L) })
            options.Defines[k] = v;
        return PlanSearch.Create(
            SourceText.Load(Plain),
            new PlanRequest(Cluster.Presets["a100-80g-selene"], 4, null, 30, options),
            Registry()
        );
    }

    /// <summary>ZB-H2 is a choice of the planner: written as the schedule <c>zb-h2</c>, it trains as one device, and
    /// is rated with less bubble than ZB-H1 at 2p microbatches, for more microbatches held.</summary>
    [Fact]
    public void AZeroBubbleH2PlanIsWrittenTrainsAsOneDeviceAndTradesMemoryForBubble()
    {
        var plan = new Plan(1, 2, 1, 4, "zb-h2", 1, false, 0, new Dictionary<string, int>());
        WrittenAndTrainsAsOneDevice(plan, "@pipeline(axis = pp, microbatches = 4, schedule = \"zb-h2\")", "zb2.mpl");
        var planner = LargerGptPlanner();
        var h2 = planner.Rate(plan with { Pp = 4, Microbatches = 8 }, 4);
        var h1 = planner.Rate(plan with { Pp = 4, Microbatches = 8, Schedule = "zb-h1" }, 4);
        Assert.True(h2.Viable && h1.Viable, h2.Pruned ?? h1.Pruned);
        Assert.True(
            h2.BubbleSeconds < h1.BubbleSeconds && h2.PeakBytes > h1.PeakBytes,
            $"zb-h2 bubble {h2.BubbleSeconds}, peak {h2.PeakBytes}; zb-h1 {h1.BubbleSeconds}, {h1.PeakBytes}"
        );
    }

    /// <summary>Recomputing the first k layers of each stage: written as <c>@remat(first = k)</c>, trains as one
    /// device, and rated between no recomputation and full recomputation in both time and memory.</summary>
    [Fact]
    public void APlanRecomputingTheFirstLayersOfEachStageIsWrittenAndTrainsAsOneDevice()
    {
        var src = SourceText.Load(Plain);
        var model = ModelSource.Read(src, new CompileOptions());
        var plan = new Plan(1, 2, 2, 2, "1f1b", 1, true, 0, new Dictionary<string, int>()) { RematFirst = 1 };
        string text = model.Write(plan);
        Assert.Contains("@remat(first = 1)\nlayer block", text);
        Assert.Single(Regex.Matches(text, "@remat"));
        Assert.Contains("recomputing the first 1 layers of each stage", plan.Summary);
        string path = P("first.mpl");
        File.WriteAllText(path, text);
        var distributed = Losses(Mplc.Run("run", path, "--steps", "3"));
        var single = Losses(Mplc.Run("run", Plain, "--steps", "3"));
        Assert.Equal(3, distributed.Length);
        for (int i = 0; i < single.Length; i++)
            Assert.Equal(single[i], distributed[i], 4);

        var options = new CompileOptions();
        foreach (var (k, v) in new[] { ("D", 512L), ("S", 256L), ("B", 32L), ("L", 8L) })
            options.Defines[k] = v;
        var cluster = Cluster.Presets["a100-80g-selene"];
        var request = new PlanRequest(cluster, 2, null, 60, options)
        {
            Fixed = new Dictionary<string, int> { ["pp"] = 2, ["tp"] = 1 },
        };
        var planner = PlanSearch.Create(src, request, Registry());
        var at = plan with { Dp = 1, Microbatches = 8 };
        var none = planner.Rate(at with { Remat = false, RematFirst = null }, 4);
        var two = planner.Rate(at with { RematFirst = 2 }, 4);
        var full = planner.Rate(at with { RematFirst = null }, 4);
        Assert.True(none.Viable && two.Viable && full.Viable);
        Assert.True(none.StepSeconds < two.StepSeconds && two.StepSeconds < full.StepSeconds);
        Assert.True(full.PeakBytes < two.PeakBytes && two.PeakBytes < none.PeakBytes);

        // On a GPU between the two in memory the search finds the plans that recompute only some layers, each
        // faster than full recomputation with the same other choices.
        var small = request with
        {
            Cluster = cluster with { HbmBytes = (none.PeakBytes + full.PeakBytes) / 2 },
        };
        var result = PlanSearch.Search(src, small, Registry());
        var partial = result.Ranked.Where(r => r.Plan.RematFirst != null).ToList();
        Assert.NotEmpty(partial);
        foreach (var r in partial)
        {
            var same = result.Candidates.Single(c =>
                c.Plan with { ParamDims = r.Plan.ParamDims } == r.Plan with { RematFirst = null }
                && c.MicrobatchSize == r.MicrobatchSize
                && c.Plan.Splits == r.Plan.Splits
            );
            Assert.True(
                r.StepSeconds < same.StepSeconds,
                $"{r.Plan.Summary}: {r.StepSeconds} s, full {same.StepSeconds} s"
            );
        }
        Assert.DoesNotContain(result.Ranked, r => r.PeakBytes > small.Cluster.HbmBytes);
    }

    /// <summary>
    /// Under <c>--mesh tp=4,ty=2</c> the transformer (planned at a width where splitting pays) is split over a 2 x 2
    /// mesh: attention's weights over both axes on different dimensions, the MLP's over both on one; the plan
    /// written, run at a small width, equals one device in every result and updated parameter, and the dataset
    /// names the mesh.
    /// </summary>
    [Fact]
    public void ATwoAxisPlanOfTheTransformerIsWrittenOverTxAndTyAndTrainsAsOneDevice()
    {
        string plan = P("plan.mpl"),
            dir = P("export-2d");
        var planned = Mplc.Run([
            .. new[] { "plan", Plain, "--cluster", "a100-80g-selene", "--gpus", "8", "--mesh", "tp=4,ty=2" },
            .. new[] { "-D", "D=2048", "-D", "S=512", "--time-limit", "60", "--top", "0", "-o", plan },
            "--export",
            dir,
        ]);
        Assert.True(planned.ExitCode == 0, planned.Stdout + planned.Stderr);
        Assert.Contains("#1 tp=2x2 ", planned.Stdout);
        Assert.Contains("tp=4 as a 2 x 2 mesh (tx by ty)", planned.Stdout);
        string text = File.ReadAllText(plan);
        Assert.Matches(@"mesh grid\[pp = \d+, dp = \d+, tx = 2, ty = 2\];", text);
        Assert.Matches(@"param wq: f32\[D, D\] shard\[(tx, ty|ty, tx)\];", text);
        Assert.Matches(@"param w1: f32\[D, 4 \* D\] shard\[_, \((tx, ty|ty, tx)\)\];", text);
        var zero = Regex.Match(text, @"run it with --zero (\d)");
        var run = Mplc.Run([
            .. new[] { "run", plan, "-D", "D=64", "-D", "S=32", "--steps", "2", "--check" },
            .. (zero.Success ? new[] { "--zero", zero.Groups[1].Value } : []),
        ]);
        Assert.True(run.ExitCode == 0, run.Stdout + run.Stderr + text);
        Assert.Contains("tx=2,ty=2 equals one device", run.Stdout + run.Stderr);
        var csv = File.ReadAllLines(Path.Combine(dir, "candidates.csv"));
        // tp_mesh comes before the shardings, the first column a comma may be quoted in.
        int column = Array.IndexOf(csv[0].Split(','), "tp_mesh");
        Assert.All(csv.Skip(1), row => Assert.Equal("2x2", row.Split(',')[column]));
    }

    [Fact]
    public void TheFreeSearchOnTheTransformerGivesARunnablePlan() => PlanRunsAsOneDevice(Plain, 4, null, 2);

    [Fact]
    public void AClassifierWithoutALoopIsPlannedAndTrainsAsOneDevice()
    {
        // Small enough that splitting its weights costs more than it saves: data parallelism over all four GPUs.
        string text = PlanRunsAsOneDevice(Unplanned("classifier.mpl"), 4, null, 3);
        Assert.Contains("mesh grid[pp = 1, dp = 4, tp = 1];", text);
        Assert.Contains("x: f32[B, D] shard[dp, _]", text);
    }

    [Fact]
    public void AWideMlpIsSplitColumnThenRow()
    {
        // Weights of 2 x 16k x 64k f32 with adam's state: 34 GiB a weight on one GPU, so they must be split; the
        // plan splits the first by columns and the second by rows, the Megatron MLP.
        string model = P("wide.mpl");
        File.WriteAllText(
            model,
            """
            const B = 64; const D = 16384; const H = 4 * D;
            model mlp(x: f32[B, D], y: f32[B, D]) -> f32[] {
              param w1: f32[D, H];
              param w2: f32[H, D];
              let d = gelu(x @ w1) @ w2 - y;
              return mean(d * d);
            }
            train mlp optimizer adam(lr = 1e-3);
            """
        );
        string plan = P("wide-plan.mpl");
        var r = RunPlan(model, "--gpus", "8", "--time-limit", "30", "-o", plan);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        string text = File.ReadAllText(plan);
        Assert.Matches(@"param w1: f32\[D, H\] shard\[_, tp\];", text);
        Assert.Matches(@"param w2: f32\[H, D\] shard\[tp, _\];", text);
        Assert.DoesNotMatch(@"tp = 1\]", text);
    }

    /// <summary>mplc plan on a100-80g-selene.</summary>
    private static Mplc.Result RunPlan(string model, params string[] args) =>
        Mplc.Run(["plan", model, "--cluster", "a100-80g-selene", .. args]);

    private static PassRegistry Registry() => (PassRegistry)CompilerServices.Create().GetService(typeof(PassRegistry))!;

    /// <summary>
    /// The best candidate is compiled whole and costed before it is reported. On GPUs whose memory lies between the
    /// best plan's composed peak and its whole program's, that plan is pruned, saying so, with every candidate of its
    /// family whose composed peak scaled by the same ratio would not fit, and the plan reported fits when compiled
    /// whole.
    /// </summary>
    [Fact]
    public void ABestPlanThatDoesNotFitWhenCompiledWholeIsPrunedAndTheNextFits()
    {
        var src = SourceText.Load(Plain);
        var options = new CompileOptions();
        foreach (var (k, v) in new[] { ("D", 512L), ("S", 256L), ("NH", 8L), ("B", 32L), ("V", 1024L) })
            options.Defines[k] = v;
        var roomy = Cluster.Presets["a100-80g-selene"];
        PlanResult Search(Cluster cluster) =>
            PlanSearch.Search(
                src,
                new PlanRequest(cluster, 4, null, 60, options)
                {
                    Fixed = new Dictionary<string, int>
                    {
                        ["tp"] = 1,
                        ["pp"] = 2,
                        ["ty"] = 1,
                    },
                },
                Registry()
            );
        var first = Search(roomy).Ranked.First();
        Assert.NotNull(first.WholePeakBytes);
        double composed = first.PeakBytes,
            whole = first.WholePeakBytes!.Value;
        Assert.True(whole > composed, $"the plan's whole program holds {whole} bytes, composed {composed}");
        var tight = roomy with { HbmBytes = (composed + whole) / 2 };
        var result = Search(tight);
        var again = result.Candidates.Single(c => c.Plan == first.Plan && c.MicrobatchSize == first.MicrobatchSize);
        Assert.False(again.Viable);
        Assert.StartsWith("pruned: compiled whole, ", again.Pruned);
        var best = result.Ranked.First();
        Assert.True(best.WholePeakBytes <= tight.HbmBytes, $"{best.Plan.Summary}: {best.WholePeakBytes} bytes");
        var family = result.Candidates.Where(c => c.Pruned?.Contains("compiled whole needed") == true).ToList();
        Assert.NotEmpty(family);
        Assert.All(
            family,
            c => Assert.Equal((first.Plan.Schedule, first.Plan.Microbatches), (c.Plan.Schedule, c.Plan.Microbatches))
        );
    }

    /// <summary>The planner composes a candidate from one- and two-layer profiles; the whole plan compiled and costed
    /// by the cost model must agree with it: the step within 15 %, the memory never below the cost model's (the
    /// planner keeps every gradient buffer for the whole step, the cost model counts values while they are live) and
    /// within 1.5 times it. (No ZeRO-2 row: its saving is the gradients beyond one 25 MiB bucket, and this model's
    /// whole gradient fits in one, so the compiled program holds what ZeRO-1's does.)</summary>
    [Theory]
    [InlineData(2, 2, 2, 4, "1f1b", 1, "none")]
    [InlineData(1, 2, 4, 4, "gpipe", 1, "full")]
    [InlineData(2, 2, 2, 4, "interleaved", 2, "none")]
    [InlineData(4, 1, 2, 2, "1f1b", 1, "none")]
    [InlineData(2, 2, 2, 4, "1f1b", 1, "attention")]
    [InlineData(2, 2, 2, 4, "zb-h1", 1, "none")]
    [InlineData(1, 4, 2, 8, "zb-h1", 1, "full")]
    [InlineData(1, 4, 2, 8, "zb-h2", 1, "none")]
    [InlineData(2, 2, 2, 4, "1f1b", 1, "none", 1)]
    [InlineData(2, 2, 2, 4, "1f1b", 1, "none", 3)]
    [InlineData(4, 1, 2, 2, "1f1b", 1, "none", 3)]
    [InlineData(1, 1, 8, 1, "1f1b", 1, "none", 3)]
    public void TheComposedRatingAgreesWithTheCostOfTheWholePlan(
        int tp,
        int pp,
        int dp,
        int m,
        string schedule,
        int chunks,
        string recompute,
        int zero = 0
    )
    {
        var src = SourceText.Load(Plain);
        var options = new CompileOptions();
        foreach (var (k, v) in new[] { ("D", 512L), ("S", 256L), ("NH", 8L), ("B", 32L), ("V", 1024L) })
            options.Defines[k] = v;
        var cluster = Cluster.Presets["a100-80g-selene"];
        var registry = Registry();
        var planner = PlanSearch.Create(src, new PlanRequest(cluster, 8, null, 60, options), registry);
        var dims = new Dictionary<string, int>
        {
            ["attention.wq"] = 1,
            ["attention.wk"] = 1,
            ["attention.wv"] = 1,
            ["attention.wo"] = 0,
            ["mlp.w1"] = 1,
            ["mlp.w2"] = 0,
        };
        var plan = new Plan(
            tp,
            pp,
            dp,
            m,
            schedule,
            chunks,
            recompute == "full",
            zero,
            tp > 1 ? dims : new Dictionary<string, int>()
        )
        {
            Selective = recompute is "full" or "none" ? null : recompute,
        };
        long mbs = 32 / (dp * m);
        var rated = planner.Rate(plan, mbs);
        Assert.True(rated.Viable, rated.Pruned);
        var cost = CostModel.Of(planner.Compile(plan, null, 32), cluster);
        Assert.InRange(rated.StepSeconds / cost.StepSeconds, 0.85, 1.15);
        Assert.True(
            rated.PeakBytes / cost.PeakBytes is > 0.9 and < 1.5,
            $"planner {rated.PeakBytes / 1048576:F1} MiB, cost model per device "
                + string.Join(", ", cost.Stages.Select(x => $"{x.PeakBytes / 1048576:F1} MiB"))
        );
    }

    [Fact]
    public async Task TheExportedDatasetHasARowPerCandidateInCsvAndParquet()
    {
        string dir = P("export");
        var r = RunPlan(Plain, "--gpus", "4", "--time-limit", "30", "--export", dir);
        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        int count = int.Parse(
            Regex.Match(r.Stdout, @"exported (\d+) candidates").Groups[1].Value,
            CultureInfo.InvariantCulture
        );
        var csv = File.ReadAllLines(Path.Combine(dir, "candidates.csv"));
        Assert.Equal(count + 1, csv.Length);
        foreach (
            var column in new[] { "model", "tp", "tp_mesh", "pp", "dp", "shardings", "step_s", "pruned", "reason" }
        )
            Assert.Contains(column, csv[0].Split(','));
        await using var stream = File.OpenRead(Path.Combine(dir, "candidates.parquet"));
        var rows = (await ParquetSerializer.DeserializeAsync<CandidateRow>(stream)).Data;
        Assert.Equal(count, rows.Count);
        Assert.Contains(rows, x => !x.Pruned && x.StepS > 0 && x.Gpus == 4);
        Assert.All(rows.Where(x => x.Pruned), x => Assert.NotEqual("", x.Reason));
    }

    [Theory]
    [InlineData("--gpus 0", "--gpus must be at least 1")]
    [InlineData("--gpus 100000", "has 3072 GPUs")]
    [InlineData("--gpus 8 --mesh ep=2", "the planner's axes are pp, dp, tp and ty, not 'ep'")]
    [InlineData("--gpus 8 --mesh tp=4,ty=4", "--mesh ty=4: the second tensor-parallel axis must divide tp=4")]
    [InlineData("--gpus 8 --mesh tp=2,ty=4", "--mesh ty=4: the second tensor-parallel axis must divide tp=2")]
    [InlineData("--gpus 8 --mesh ty=3", "--mesh ty=3: it must divide --gpus 8")]
    [InlineData("--gpus 8 --mesh tp=3", "--mesh tp=3: it must divide --gpus 8")]
    [InlineData("--gpus 8 --mesh dp=8 --batch 4", "no mesh of 8 GPUs splits the batch of 4")]
    [InlineData("--gpus 8 --top -1", "--top must be at least 0")]
    [InlineData("--gpus 8 --time-limit 0", "--time-limit must be positive")]
    [InlineData("--gpus 8 --time-limit 0.001", "the search reached its time limit")]
    public void BadArgumentsAreClearErrors(string args, string message)
    {
        var r = RunPlan(Plain, args.Split(' '));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(message, r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [Fact]
    public void AModelThatFitsNowhereNearSaysTheSmallestGpuCountThatFits()
    {
        // 24 layers of 8k x 32k f16 weights with adam: about 100 GiB of state, more than one GPU holds.
        var r = RunPlan(Plain, "--gpus", "1", "-D", "D=8192", "-D", "NH=64", "-D", "L=24", "--time-limit", "60");
        Assert.Equal(1, r.ExitCode);
        Assert.Matches(
            @"does not fit on 1 GPUs of a100-80g-selene under any plan; the smallest that fits is \d+ GPUs",
            r.Stderr
        );
    }

    [Fact]
    public void AModelWithoutABatchConstIsRefused()
    {
        string model = P("nobatch.mpl");
        File.WriteAllText(
            model,
            """
            model m(x: f32[4, 8]) -> f32[] {
              param w: f32[8, 8];
              return mean(x @ w);
            }
            train m optimizer sgd(lr = 0.1);
            """
        );
        var r = RunPlan(model, "--gpus", "2");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("must be a const (the batch size)", r.Stderr);
    }
}
