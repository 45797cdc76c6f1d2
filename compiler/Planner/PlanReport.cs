using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json.Serialization;
using Parquet.Serialization;

namespace ParallelCompiler.Planner;

/// <summary>The planner's answer in words (the best plans and why) and as a dataset (every candidate, CSV and
/// Parquet; docs/planner.md gives the schema).</summary>
public static class PlanReport
{
    private static string F1(double v) => v.ToString("F1", CultureInfo.InvariantCulture);

    private static string G(double v) => v.ToString("G6", CultureInfo.InvariantCulture);

    /// <summary>Seconds as the planner's reports print them.</summary>
    public static string Seconds(double s) =>
        s >= 1 ? s.ToString("F2", CultureInfo.InvariantCulture) + " s"
        : s >= 1e-3 ? (s * 1e3).ToString("F1", CultureInfo.InvariantCulture) + " ms"
        : (s * 1e6).ToString("F1", CultureInfo.InvariantCulture) + " us";

    private static string Tflops(double flops) =>
        (flops / 1e12).ToString(flops >= 1e11 ? "F1" : "G3", CultureInfo.InvariantCulture) + " TFLOP/s";

    private static string Pct(double share) => (share * 100).ToString("F1", CultureInfo.InvariantCulture) + " %";

    /// <summary>One paragraph: which choice of the plan bought what.</summary>
    public static string Explain(RatedPlan r, PlanResult result, RatedPlan? next)
    {
        var p = r.Plan;
        var c = result.Request.Cluster;
        var model = result.Model;
        var parts = new List<string>();
        if (p.Tp > 1)
        {
            string where = p.Tp <= c.GpusPerNode ? "inside a node (NVLink)" : "across nodes (InfiniBand)";
            int split = model.Params.Keys.Count(k => p.SplitOf(k) > 1);
            string mesh = p.Ty > 1 ? $"tp={p.Tp} as a {p.Tx} x {p.Ty} mesh (tx by ty)" : $"tp={p.Tp}";
            parts.Add(
                $"{mesh} {where}: {split} of {model.Params.Count} weight declarations split "
                    + $"({Describe(p, model)}), tensor-parallel collectives "
                    + Pct(r.TensorParallelSeconds / r.StepSeconds)
                    + " of the step"
            );
        }
        else
            parts.Add("tp=1: every weight whole on each GPU (no tensor-parallel collectives)");
        if (p.Pp > 1)
            parts.Add(
                $"pp={p.Pp} cuts {model.Layers} layers "
                    + (
                        r.LayersPerStage.Length > p.Pp
                            ? $"into {r.LayersPerStage.Length} chunks, {p.Chunks} a stage: "
                            : ""
                    )
                    + $"{Cut(r.LayersPerStage)}; {p.Schedule}"
                    + (p.Chunks > 1 ? $" with {p.Chunks} chunks" : "")
                    + (Runtime.Pipeline.Schedule.SplitsBackward(p.Schedule) ? " (weight gradients deferred)" : "")
                    + $" over {p.Microbatches} microbatches of {r.MicrobatchSize}: bubble "
                    + Pct(r.BubbleSeconds / r.StepSeconds)
            );
        else
            parts.Add(
                p.Microbatches > 1
                    ? $"no pipeline: {p.Microbatches} microbatches of {r.MicrobatchSize} accumulated"
                    : $"no pipeline, one microbatch of {r.MicrobatchSize}"
            );
        parts.Add(
            p.Dp > 1
                ? $"dp={p.Dp}: gradient synchronisation exposed {Seconds(r.DataParallelSeconds)}"
                    + p.Zero switch
                    {
                        1 => ", ZeRO-1 splits the optimizer state",
                        2 => ", ZeRO-2 splits the optimizer state and the gradients",
                        3 => $", ZeRO-3 splits the parameters too, gathered at each use ({Seconds(r.GatherSeconds)})",
                        _ => "",
                    }
                : "dp=1"
        );
        parts.Add(
            (
                p.Remat && p.RematFirst is { } k ? $"the first {k} layers of each stage recomputed"
                : p.Remat ? "full recomputation of each layer"
                : p.Selective != null ? $"{p.Selective} recomputed in the backward"
                : "no recomputation"
            ) + $": {Analysis.Units.Bytes(r.PeakBytes)} at the peak of {Analysis.Units.Bytes(c.HbmBytes)}"
        );
        string text = string.Join("; ", parts) + ".";
        if (next != null)
            text +=
                $" {Pct(next.StepSeconds / r.StepSeconds - 1)} faster than the next best ({next.Plan.Summary}"
                + (next.Layouts != r.Layouts && next.Plan.Tp == p.Tp ? ", other shardings" : "")
                + ").";
        return text;
    }

    /// <summary>Layers per stage, as 24/24, or 63 x 2/1 when many stages hold the same.</summary>
    private static string Cut(int[] split)
    {
        if (split.Length <= 8)
            return string.Join("/", split);
        int same = split.TakeWhile(x => x == split[0]).Count();
        return $"{same} of {split[0]}" + (same < split.Length ? "/" + string.Join("/", split.Skip(same)) : "");
    }

    private static string Describe(Plan p, ModelSource model)
    {
        var split = model
            .Params.Keys.Where(k => p.SplitOf(k) > 1)
            .Order(StringComparer.Ordinal)
            .Select(k =>
            {
                int rank = model.Params[k].Shape.Length;
                string Kind(int d) => rank == 2 ? (d == 1 ? "columns" : "rows") : $"dim {d}";
                string name = k.Split('.')[^1];
                int x = p.ParamDims.GetValueOrDefault(k, -1);
                if (p.Ty == 1)
                    return $"{name} by {Kind(x)}";
                int y = p.ParamDimsY.GetValueOrDefault(k, -1);
                return x == y ? $"{name} by {Kind(x)} over both"
                    : x < 0 ? $"{name} by {Kind(y)} over ty"
                    : y < 0 ? $"{name} by {Kind(x)} over tx"
                    : $"{name} by {Kind(x)} over tx and {Kind(y)} over ty";
            })
            .ToList();
        return split.Count == 0 ? "none" : string.Join(", ", split);
    }

    /// <summary>The best plan and the next <paramref name="top"/>, with their breakdown and why.</summary>
    public static void Print(PlanResult result, int top, TextWriter w, double tokensPerStep)
    {
        var ranked = result.Ranked.ToList();
        var req = result.Request;
        w.WriteLine(
            $"plan: {result.Model.Model.Name} on {req.Gpus} GPUs of {req.Cluster.Name}: {result.Candidates.Count} "
                + $"candidates, {ranked.Count} viable, {result.Profiles} compiled profiles, "
                + $"{F1(result.SearchSeconds)} s (intra-operator programs {F1(result.Times.IntraOpSeconds)} s, "
                + $"profiles {F1(result.Times.ProfileSeconds)} s, composition {F1(result.Times.ComposeSeconds)} s, "
                + $"whole-program checks {F1(result.Times.WholeSeconds)} s)"
                + (result.TimedOut ? " (stopped at the time limit)" : "")
        );
        for (int i = 0; i < Math.Min(ranked.Count, top + 1); i++)
        {
            var r = ranked[i];
            w.WriteLine();
            w.WriteLine($"#{i + 1} {r.Plan.Summary}");
            w.WriteLine(
                $"  step {Seconds(r.StepSeconds)}, {G(Math.Round(tokensPerStep / r.StepSeconds))} tokens/s, "
                    + $"{Tflops(r.FlopsPerGpu)} per GPU, "
                    + $"memory {Analysis.Units.Bytes(r.PeakBytes)}"
            );
            w.WriteLine(
                $"  compute {Seconds(r.ComputeSeconds)} (tensor-parallel collectives "
                    + $"{Seconds(r.TensorParallelSeconds)}, pipeline sends "
                    + $"{Seconds(r.PipelineTransferSeconds)}"
                    + (r.Plan.Zero == 3 ? $", ZeRO-3 parameter gathers {Seconds(r.GatherSeconds)}" : "")
                    + "), bubble "
                    + $"{Seconds(r.BubbleSeconds)}, "
                    + $"optimizer {Seconds(r.OptimizerSeconds)}, exposed gradient sync "
                    + $"{Seconds(r.DataParallelSeconds)}"
            );
            if (r.WholeStepSeconds is { } whole)
                w.WriteLine(
                    $"  compiled whole and costed: step {Seconds(whole)}, "
                        + $"memory {Analysis.Units.Bytes(r.WholePeakBytes ?? 0)} (composed: {Seconds(r.StepSeconds)}, "
                        + $"{Analysis.Units.Bytes(r.PeakBytes)})"
                );
            w.WriteLine($"  why: {Explain(r, result, i + 1 < ranked.Count ? ranked[i + 1] : null)}");
        }
        int checkedWhole = result.Candidates.Count(c => c.WholeStepSeconds != null && !c.Viable);
        if (checkedWhole > 0)
            w.WriteLine(
                $"\n{checkedWhole} faster candidate(s) compiled whole did not fit a GPU (pruned; see --export)"
            );
    }

    /// <summary>One candidate as a row of the dataset.</summary>
    public static CandidateRow Row(RatedPlan r, PlanResult result)
    {
        var p = r.Plan;
        bool fits = r.PeakBytes <= result.Request.Cluster.HbmBytes && r.PeakBytes > 0;
        return new CandidateRow
        {
            Model = result.Model.Model.Name,
            Params = result.Parameters,
            Layers = result.Model.Layers,
            Batch = result.Request.Batch ?? result.Model.Batch,
            Cluster = result.Request.Cluster.Name,
            Gpus = result.Request.Gpus,
            Tp = p.Tp,
            TpMesh = p.TpMesh,
            Pp = p.Pp,
            Dp = p.Dp,
            Microbatches = p.Microbatches,
            MicrobatchSize = r.MicrobatchSize,
            Schedule = p.Schedule,
            Chunks = p.Chunks,
            Remat = p.Remat,
            Recompute = p.Recompute,
            Zero = p.Zero,
            Shardings = r.Layouts,
            LayersPerStage = string.Join("/", r.LayersPerStage),
            StepS = r.StepSeconds,
            ComputeS = r.ComputeSeconds,
            TpCommS = r.TensorParallelSeconds,
            PipelineSendS = r.PipelineTransferSeconds,
            BubbleS = r.BubbleSeconds,
            DpSyncS = r.DataParallelSeconds,
            ZeroGatherS = r.GatherSeconds,
            OptimizerS = r.OptimizerSeconds,
            MemoryGib = r.PeakBytes / (1024.0 * 1024 * 1024),
            TflopsPerGpu = r.FlopsPerGpu / 1e12,
            Fits = fits,
            Pruned = !r.Viable,
            Reason = r.Pruned ?? "",
        };
    }

    /// <summary>Writes every candidate to DIR/candidates.csv and DIR/candidates.parquet.</summary>
    public static void Export(PlanResult result, string dir)
    {
        Directory.CreateDirectory(dir);
        var rows = result.Candidates.Select(r => Row(r, result)).ToList();
        var props = typeof(CandidateRow).GetProperties();
        var csv = new StringBuilder();
        csv.AppendLine(string.Join(",", props.Select(pr => pr.GetCustomAttribute<JsonPropertyNameAttribute>()!.Name)));
        foreach (var row in rows)
            csv.AppendLine(string.Join(",", props.Select(pr => Cell(pr.GetValue(row)!))));
        File.WriteAllText(Path.Combine(dir, "candidates.csv"), csv.ToString());
        using var stream = File.Create(Path.Combine(dir, "candidates.parquet"));
        ParquetSerializer.SerializeAsync(rows, stream).GetAwaiter().GetResult();
    }

    private static string Cell(object v) =>
        v switch
        {
            double d => d.ToString("R", CultureInfo.InvariantCulture),
            bool b => b ? "true" : "false",
            string s when s.Contains(',') || s.Contains('"') => "\"" + s.Replace("\"", "\"\"") + "\"",
            _ => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "",
        };
}

/// <summary>A row of the planner's dataset: the model, the cluster, the strategy, the predicted times and memory,
/// and whether the candidate was pruned and why (docs/planner.md documents every column).</summary>
public sealed class CandidateRow
{
    /// <summary>Column <c>model</c> (docs/planner.md).</summary>
    [JsonPropertyName("model")]
    public string Model { get; set; } = "";

    /// <summary>Column <c>params</c> (docs/planner.md).</summary>
    [JsonPropertyName("params")]
    public double Params { get; set; }

    /// <summary>Column <c>layers</c> (docs/planner.md).</summary>
    [JsonPropertyName("layers")]
    public long Layers { get; set; }

    /// <summary>Column <c>batch</c> (docs/planner.md).</summary>
    [JsonPropertyName("batch")]
    public long Batch { get; set; }

    /// <summary>Column <c>cluster</c> (docs/planner.md).</summary>
    [JsonPropertyName("cluster")]
    public string Cluster { get; set; } = "";

    /// <summary>Column <c>gpus</c> (docs/planner.md).</summary>
    [JsonPropertyName("gpus")]
    public int Gpus { get; set; }

    /// <summary>Column <c>tp</c> (docs/planner.md).</summary>
    [JsonPropertyName("tp")]
    public int Tp { get; set; }

    /// <summary>Column <c>tp_mesh</c> (docs/planner.md).</summary>
    [JsonPropertyName("tp_mesh")]
    public string TpMesh { get; set; } = "";

    /// <summary>Column <c>pp</c> (docs/planner.md).</summary>
    [JsonPropertyName("pp")]
    public int Pp { get; set; }

    /// <summary>Column <c>dp</c> (docs/planner.md).</summary>
    [JsonPropertyName("dp")]
    public int Dp { get; set; }

    /// <summary>Column <c>microbatches</c> (docs/planner.md).</summary>
    [JsonPropertyName("microbatches")]
    public int Microbatches { get; set; }

    /// <summary>Column <c>microbatch_size</c> (docs/planner.md).</summary>
    [JsonPropertyName("microbatch_size")]
    public long MicrobatchSize { get; set; }

    /// <summary>Column <c>schedule</c> (docs/planner.md).</summary>
    [JsonPropertyName("schedule")]
    public string Schedule { get; set; } = "";

    /// <summary>Column <c>chunks</c> (docs/planner.md).</summary>
    [JsonPropertyName("chunks")]
    public int Chunks { get; set; }

    /// <summary>Column <c>remat</c> (docs/planner.md).</summary>
    [JsonPropertyName("remat")]
    public bool Remat { get; set; }

    /// <summary>Column <c>recompute</c> (docs/planner.md).</summary>
    [JsonPropertyName("recompute")]
    public string Recompute { get; set; } = "";

    /// <summary>Column <c>zero</c> (docs/planner.md).</summary>
    [JsonPropertyName("zero")]
    public int Zero { get; set; }

    /// <summary>Column <c>shardings</c> (docs/planner.md).</summary>
    [JsonPropertyName("shardings")]
    public string Shardings { get; set; } = "";

    /// <summary>Column <c>layers_per_stage</c> (docs/planner.md).</summary>
    [JsonPropertyName("layers_per_stage")]
    public string LayersPerStage { get; set; } = "";

    /// <summary>Column <c>step_s</c> (docs/planner.md).</summary>
    [JsonPropertyName("step_s")]
    public double StepS { get; set; }

    /// <summary>Column <c>compute_s</c> (docs/planner.md).</summary>
    [JsonPropertyName("compute_s")]
    public double ComputeS { get; set; }

    /// <summary>Column <c>tp_comm_s</c> (docs/planner.md).</summary>
    [JsonPropertyName("tp_comm_s")]
    public double TpCommS { get; set; }

    /// <summary>Column <c>pipeline_send_s</c> (docs/planner.md).</summary>
    [JsonPropertyName("pipeline_send_s")]
    public double PipelineSendS { get; set; }

    /// <summary>Column <c>bubble_s</c> (docs/planner.md).</summary>
    [JsonPropertyName("bubble_s")]
    public double BubbleS { get; set; }

    /// <summary>Column <c>dp_sync_s</c> (docs/planner.md).</summary>
    [JsonPropertyName("dp_sync_s")]
    public double DpSyncS { get; set; }

    /// <summary>Column <c>zero_gather_s</c> (docs/planner.md).</summary>
    [JsonPropertyName("zero_gather_s")]
    public double ZeroGatherS { get; set; }

    /// <summary>Column <c>optimizer_s</c> (docs/planner.md).</summary>
    [JsonPropertyName("optimizer_s")]
    public double OptimizerS { get; set; }

    /// <summary>Column <c>memory_gib</c> (docs/planner.md).</summary>
    [JsonPropertyName("memory_gib")]
    public double MemoryGib { get; set; }

    /// <summary>Column <c>tflops_per_gpu</c> (docs/planner.md).</summary>
    [JsonPropertyName("tflops_per_gpu")]
    public double TflopsPerGpu { get; set; }

    /// <summary>Column <c>fits</c> (docs/planner.md).</summary>
    [JsonPropertyName("fits")]
    public bool Fits { get; set; }

    /// <summary>Column <c>pruned</c> (docs/planner.md).</summary>
    [JsonPropertyName("pruned")]
    public bool Pruned { get; set; }

    /// <summary>Column <c>reason</c> (docs/planner.md).</summary>
    [JsonPropertyName("reason")]
    public string Reason { get; set; } = "";
}
