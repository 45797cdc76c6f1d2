using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using ParallelCompiler.Analysis;
using ParallelCompiler.Cost;
using ParallelCompiler.Lowering;
using ParallelCompiler.Passes;
using ParallelCompiler.Passes.Infrastructure;
using ParallelCompiler.Planner;
using ParallelCompiler.Syntax;

/// <summary>
/// The planner against Megatron-LM's hand-tuned plans (Narayanan et al. 2021, Table 1): each row's transformer (as
/// Table1.cs writes it) with every shard[...], the mesh, @pipeline and @remat taken out is planned on the row's GPUs of
/// a100-80g-selene at the row's batch; the row's own plan (its tp, pp, microbatch size, interleaving, full
/// recomputation, the Megatron shardings) is rated by the same planner in the same way. Throughput is counted as
/// the paper counts it (96 B s l h^2 (1 + s/6h + V/16lh) per step).
/// </summary>
internal static partial class PlanTable1
{
    [GeneratedRegex(@" shard\[[^\]]*\]")]
    private static partial Regex Shard();

    [GeneratedRegex(@"^\s*(mesh .*|@pipeline.*|@remat)\n", RegexOptions.Multiline)]
    private static partial Regex PlanLines();

    /// <summary>The row's model with its plan taken out.</summary>
    public static string Plain(Table1.Row r) => PlanLines().Replace(Shard().Replace(Table1.Source(r), ""), "");

    /// <summary>Megatron-LM's shardings of the transformer: column-parallel q, k, v and w1, row-parallel wo and w2,
    /// the embedding split by vocabulary.</summary>
    public static readonly IReadOnlyDictionary<string, int> MegatronDims = new Dictionary<string, int>
    {
        ["attention.wq"] = 1,
        ["attention.wk"] = 1,
        ["attention.wv"] = 1,
        ["attention.wo"] = 0,
        ["mlp.w1"] = 1,
        ["mlp.w2"] = 0,
        ["gpt.wte"] = 0,
    };

    public static void Run(int rows, bool fullCost)
    {
        var registry = (PassRegistry)CompilerServices.Create().GetService(typeof(PassRegistry))!;
        var cluster = Cluster.Presets["a100-80g-selene"];
        Console.WriteLine(
            "| row | GPUs | plan found | TFLOP/s | memory | Megatron's plan | TFLOP/s | memory | found / Megatron | "
                + "search | candidates | profiles |"
        );
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        var ratios = new List<double>();
        foreach (var r in Table1.Rows.Take(rows))
        {
            var src = new SourceText($"table1-{r.Name}.mpl", Plain(r));
            var request = new PlanRequest(cluster, r.Gpus, r.Batch, 170, new CompileOptions());
            var sw = Stopwatch.StartNew();
            var result = PlanSearch.Search(src, request, registry);
            double searchSeconds = sw.Elapsed.TotalSeconds;
            var best = result.Ranked.First();
            int dp = r.Gpus / (r.Tp * r.Pp);
            var megatron = new Plan(
                r.Tp,
                r.Pp,
                dp,
                r.Batch / (dp * r.Mbs),
                r.Chunks > 1 ? "interleaved" : "1f1b",
                r.Chunks,
                true,
                0,
                r.Tp > 1 ? MegatronDims : new Dictionary<string, int>()
            );
            var rated = PlanSearch.Create(src, request, registry).Rate(megatron, r.Mbs);
            double flops = Table1.PaperFlops(r) / r.Gpus;
            double found = flops / best.StepSeconds / 1e12,
                hand = rated.StepSeconds > 0 ? flops / rated.StepSeconds / 1e12 : 0;
            if (hand > 0)
                ratios.Add(found / hand);
            Console.WriteLine(
                string.Create(
                    CultureInfo.InvariantCulture,
                    $"| {r.Name} | {r.Gpus} | {best.Plan.Summary}, microbatch {best.MicrobatchSize} | {found:F1} | "
                        + $"{Units.Bytes(best.PeakBytes)} | {megatron.Summary}, microbatch {r.Mbs} | "
                        + $"{(hand > 0 ? hand.ToString("F1", CultureInfo.InvariantCulture) : rated.Pruned)} | "
                        + $"{Units.Bytes(rated.PeakBytes)} | "
                        + $"{(hand > 0 ? (found / hand).ToString("F2") + "x" : "-")} | "
                        + $"{searchSeconds:F1} s | {result.Candidates.Count} | {result.Profiles} |"
                )
            );
            if (fullCost)
                foreach (
                    var (name, plan, mbs) in new[]
                    {
                        ("found", best.Plan, best.MicrobatchSize),
                        ("Megatron", megatron, r.Mbs),
                    }
                )
                {
                    var planner = PlanSearch.Create(src, request, registry);
                    var module = planner.Compile(plan, null, r.Batch);
                    var cost = CostModel.Of(module, cluster);
                    Console.WriteLine(
                        string.Create(
                            CultureInfo.InvariantCulture,
                            $"|  | {name}, compiled whole and costed: step {cost.StepSeconds:F2} s (planner "
                                + $"{(name == "found" ? best : rated).StepSeconds:F2} s), "
                                + $"{flops / cost.StepSeconds / 1e12:F1} TFLOP/s, "
                                + $"memory {Units.Bytes(cost.PeakBytes)} |"
                        )
                    );
                }
        }
        if (ratios.Count > 0)
            Console.WriteLine(
                string.Create(
                    CultureInfo.InvariantCulture,
                    $"found / Megatron: average {ratios.Average():F2}x, worst {ratios.Min():F2}x over "
                        + $"{ratios.Count} rows"
                )
            );
    }
}
