using System.Globalization;
using ParallelCompiler.IR;
using ParallelCompiler.Syntax;
using Spectre.Console;

namespace ParallelCompiler.Driver.Reports;

/// <summary><c>mplc compile --stats</c>: per device FLOPs, bytes each collective sends, parameters and peak memory; per
/// pipeline device compute, bubble and activations held.</summary>
public static class StatsReport
{
    /// <summary>Writes the tables for <paramref name="module"/> to <paramref name="stderr"/>.</summary>
    public static void Print(Operation module, TextWriter stderr)
    {
        var mesh = module.DeviceMesh();
        var func = module.EntryFunction() ?? throw new UserErrorException("the module has no entry function");
        if (!module.IsSpmd())
            stderr.WriteLine(
                "note: the pipeline did not run spmdize: statistics are for the whole " + "program on one device"
            );
        // The microbatch axis is not devices: a device's statistics are those of its rank with microbatch 0.
        var physical = module.PhysicalMesh();
        var devices = module.IsSpmd() ? physical.DeviceCount : 1;
        int FullRank(int rank)
        {
            if (physical.AxisNames.Count == mesh.AxisNames.Count)
                return rank;
            var c = physical.Coords(rank);
            return mesh.RankOf(
                mesh.AxisNames.Select(a =>
                        physical.AxisNames.Contains(a) ? c[physical.AxisNames.ToList().IndexOf(a)] : 0
                    )
                    .ToArray()
            );
        }
        // Every device runs the same program; ranks differ only in point-to-point edges and pipeline stages, so equal
        // rows are merged.
        var rows = new List<(int First, int Last, Analysis.DeviceStats Stats, string Key)>();
        // Only point-to-point ops and stages make ranks differ; otherwise one device's statistics stand for all.
        bool uniform = !func.Walk()
            .Any(o => o.Name is "dist.send" or "dist.recv" or "dist.collective_permute" or "pipe.schedule");
        for (int rank = 0; rank < devices; rank++)
        {
            var st = uniform && rows.Count > 0 ? rows[0].Stats : Analysis.DeviceStats.Of(func, mesh, FullRank(rank));
            string key =
                $"{st.Flops}|{st.PeakBytes}|{string.Join(",", st.Collectives.Select(c => $"{c.Key}:{c.Value}"))}";
            if (rows.Count > 0 && rows[^1].Key == key)
                rows[^1] = (rows[^1].First, rank, rows[^1].Stats, key);
            else
                rows.Add((rank, rank, st, key));
            if (rank >= 4096)
            {
                stderr.WriteLine($"note: statistics shown for the first {rank + 1} devices");
                break;
            }
        }
        var kinds = rows.SelectMany(r => r.Stats.Collectives.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
        var table = new Table().Border(TableBorder.Simple);
        table.AddColumns(["device", "FLOPs", .. kinds.Select(k => $"{k} (n, sent)"), "sent", "params", "peak memory"]);
        foreach (var (first, last, st, _) in rows)
        {
            var cells = new List<string>
            {
                first == last ? $"{first}" : $"{first}-{last}",
                Analysis.DeviceStats.Count(st.Flops),
            };
            foreach (var k in kinds)
                cells.Add(
                    st.Collectives.TryGetValue(k, out var c) ? $"{c.Count}, {Analysis.Units.Bytes(c.Bytes)}" : "-"
                );
            cells.Add(Analysis.Units.Bytes(st.CommBytes));
            cells.Add(Analysis.Units.Bytes(st.ParamBytes));
            cells.Add(Analysis.Units.Bytes(st.PeakBytes));
            table.AddRow(cells.Select(Markup.Escape).ToArray());
        }
        table.Caption($"{devices} device(s), mesh {physical}; bytes sent per device per step under ring algorithms");
        Terminal.For(stderr).Write(table);
        if (Analysis.PipelineStats.Of(func) is { } ps)
            PrintPipeline(ps, physical.DeviceCount / ps.Devices.Count, stderr);
    }

    private static void PrintPipeline(Analysis.PipelineStats ps, int replicas, TextWriter stderr)
    {
        var table = new Table().Border(TableBorder.Simple);
        // A split backward shows its input (B) and weight (W) gradients apart.
        bool split = ps.Devices.Any(d => d.WeightFlops > 0);
        table.AddColumns([
            "pipeline device",
            "stages",
            "forward FLOPs",
            split ? "B FLOPs" : "backward FLOPs",
            .. split ? new[] { "W FLOPs" } : [],
            "per-step FLOPs",
            "busy",
            "idle (bubble)",
            "activations held",
        ]);
        foreach (var d in ps.Devices)
            table.AddRow([
                Markup.Escape($"{d.Device}"),
                Markup.Escape(string.Join(", ", d.Stages)),
                Analysis.DeviceStats.Count(d.ForwardFlops),
                Analysis.DeviceStats.Count(d.BackwardFlops),
                .. split ? new[] { Analysis.DeviceStats.Count(d.WeightFlops) } : [],
                Analysis.DeviceStats.Count(d.StepFlops),
                (d.Busy / ps.Timeline.Makespan).ToString("P1", CultureInfo.InvariantCulture),
                d.Bubble.ToString("P1", CultureInfo.InvariantCulture),
                d.PeakMicrobatches == 0
                    ? "-"
                    : Markup.Escape(
                        $"{d.PeakMicrobatches} microbatch(es), " + $"{Analysis.Units.Bytes(d.PeakActivationBytes)}"
                    ),
            ]);
        var (kind, m, chunks) = ps.Schedule;
        table.Caption(
            Markup.Escape(
                $"schedule {kind}, {m} "
                    + $"microbatch(es){(chunks > 1 ? $", {chunks} chunks per device" : "")}; each row stands for "
                    + $"{replicas} device(s); time in proportion to FLOPs, transfers taken as free"
            )
        );
        Terminal.For(stderr).Write(table);
    }
}
