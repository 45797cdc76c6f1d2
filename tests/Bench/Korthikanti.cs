using System.Diagnostics;
using System.Globalization;
using ParallelCompiler.Cost;
using ParallelCompiler.Passes;
using ParallelCompiler.Passes.Infrastructure;

/// <summary>
/// The cost model against Korthikanti et al. (2022), "Reducing Activation Recomputation in Large Transformer
/// Models": the iteration time of their GPT configurations (tp 8, one microbatch of one sequence at a time, V =
/// 51,200, s = 2,048, f16, no data parallelism) with full recomputation, and with sequence parallelism plus
/// selective recomputation (only the attention core recomputed). The point is the gain between the two, which
/// the model must give within 10 %: each row is compiled both ways and costed on a100-80g-selene with the
/// calibrated efficiencies (fitted on Megatron-LM's Table 1 only).
/// </summary>
public static class Korthikanti
{
    /// <summary>A configuration and its published iteration times (full recomputation, then sequence parallelism
    /// with selective recomputation); null where the time is not recorded here.</summary>
    private sealed record Row(Table1.Row Config, double? Full, double? Selective);

    // The 1T times are in the project's planning notes; the others as recalled from the paper's Table 5.
    private static readonly Row[] Rows =
    [
        new(new("22B", 64, 6144, 48, 8, 1, 8, 4, 1, 1, 0), 1.42, 1.10),
        new(new("175B", 96, 12288, 96, 8, 8, 64, 64, 1, 1, 0), 18.13, 13.75),
        new(new("530B", 128, 20480, 105, 8, 35, 280, 280, 1, 1, 0), 49.05, 37.83),
        new(new("1T", 160, 25600, 128, 8, 64, 512, 512, 1, 1, 0), 94.42, 71.49),
    ];

    /// <summary>Writes every row's two models to <paramref name="dir"/> as NAME-full.mpl and NAME-sp.mpl.</summary>
    public static void WriteSources(string dir)
    {
        Directory.CreateDirectory(dir);
        foreach (var r in Rows.Select(x => x.Config))
        {
            File.WriteAllText(Path.Combine(dir, $"{r.Name}-full.mpl"), Table1.Source(r));
            File.WriteAllText(Path.Combine(dir, $"{r.Name}-sp.mpl"), Table1.Source(r, sequenceParallel: true));
        }
        Console.WriteLine($"wrote {2 * Rows.Length} models to {dir}");
    }

    /// <summary>Compiles and costs every row (or the first <paramref name="rows"/>) both ways; prints the
    /// table.</summary>
    public static void Run(int rows)
    {
        var registry = (PassRegistry)CompilerServices.Create().GetService(typeof(PassRegistry))!;
        var cluster = Cluster.Presets["a100-80g-selene"];
        Console.WriteLine(
            "| model | GPUs | full: predicted | published | SP + selective: predicted | published | gain: predicted | "
                + "published | gain error | memory (full / SP + selective) | compile + cost |"
        );
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var row in Rows.Take(rows))
        {
            var r = row.Config;
            var sw = Stopwatch.StartNew();
            var full = CostModel.Of(
                Table1.Compile($"{r.Name}-full.mpl", Table1.Source(r), registry),
                cluster,
                Table1.Sync
            );
            var sel = CostModel.Of(
                Table1.Compile($"{r.Name}-sp.mpl", Table1.Source(r, sequenceParallel: true), registry),
                cluster,
                Table1.Sync
            );
            double gain = full.StepSeconds / sel.StepSeconds;
            double? published = row.Full / row.Selective;
            string Opt(double? v, string f) => v is { } x ? x.ToString(f, CultureInfo.InvariantCulture) : "-";
            string error = published is { } p
                ? (gain / p - 1).ToString("+0.0%;-0.0%", CultureInfo.InvariantCulture)
                : "-";
            double gib = 1L << 30;
            Console.WriteLine(
                string.Create(
                    CultureInfo.InvariantCulture,
                    $"| {r.Name} | {r.Gpus} | {full.StepSeconds:F2} s | {Opt(row.Full, "F2")} s | "
                        + $"{sel.StepSeconds:F2} s | {Opt(row.Selective, "F2")} s | {gain:F3}x | "
                        + $"{Opt(published, "F3")}x | {error} | "
                        + $"{full.PeakBytes / gib:F1} / {sel.PeakBytes / gib:F1} GiB | {sw.Elapsed.TotalSeconds:F1} s |"
                )
            );
        }
    }
}
