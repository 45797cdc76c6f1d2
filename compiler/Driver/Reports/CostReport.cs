using System.Globalization;
using System.Text.Json;
using ParallelCompiler.Cost;
using Spectre.Console;

namespace ParallelCompiler.Driver.Reports;

/// <summary><c>mplc cost</c>: the predicted step as a table, or as one JSON object.</summary>
public static class CostReport
{
    private static string S(double seconds) =>
        seconds >= 1 ? $"{seconds.ToString("0.000", CultureInfo.InvariantCulture)} s"
        : seconds >= 1e-3 ? $"{(seconds * 1e3).ToString("0.000", CultureInfo.InvariantCulture)} ms"
        : $"{(seconds * 1e6).ToString("0.0", CultureInfo.InvariantCulture)} us";

    private static string P(double share) => share.ToString("P1", CultureInfo.InvariantCulture);

    /// <summary>Writes the table: per pipeline device, then per collective kind, then the step line.</summary>
    public static void Print(StepCost c, Cluster cluster, double tokens, TextWriter w)
    {
        var devices = new Table()
            .Border(TableBorder.Simple)
            .AddColumns("pipeline device", "compute", "communication", "idle (bubble)", "peak memory");
        foreach (var s in c.Stages)
            devices.AddRow(
                $"{s.Device}",
                S(s.ComputeSeconds),
                S(s.CommSeconds),
                S(s.IdleSeconds),
                Markup.Escape(Analysis.Units.Bytes(s.PeakBytes))
            );
        devices.Caption(
            Markup.Escape(
                $"{c.Devices} GPU(s) of {cluster.Name}; memory per device, "
                    + $"{Analysis.Units.Bytes(c.HbmBytes)} a GPU"
            )
        );
        Terminal.For(w).Write(devices);
        var comm = new Table()
            .Border(TableBorder.Simple)
            .AddColumns("collective", "count", "sent per device", "time", "exposed");
        foreach (var k in c.Collectives)
            comm.AddRow(
                Markup.Escape(k.Kind),
                $"{k.Count}",
                Markup.Escape(Analysis.Units.Bytes(k.BytesSent)),
                S(k.Seconds),
                S(k.ExposedSeconds)
            );
        if (c.Collectives.Count > 0)
            Terminal.For(w).Write(comm);
        var kernels = new Table()
            .Border(TableBorder.Simple)
            .AddColumns("kernels", "launches", "FLOPs", "HBM bytes", "time", "memory-bound");
        foreach (var k in c.Kernels)
            kernels.AddRow(
                Markup.Escape(k.Kind),
                $"{k.Count}",
                Markup.Escape(Analysis.DeviceStats.Count(k.Flops)),
                Markup.Escape(Analysis.Units.Bytes(k.Bytes)),
                S(k.Seconds),
                P((double)k.MemoryBound / Math.Max(1, k.Count))
            );
        kernels.Caption("on the busiest pipeline device, over the step");
        if (c.Kernels.Count > 0)
            Terminal.For(w).Write(kernels);
        string rate =
            tokens > 0 ? $", {(tokens / c.StepSeconds).ToString("N0", CultureInfo.InvariantCulture)} tokens/s" : "";
        w.WriteLine(
            $"step: {S(c.StepSeconds)}{rate}; compute {S(c.ComputeSeconds)}, exposed communication "
                + $"{S(c.ExposedCommSeconds)}, "
                + $"bubble {S(c.BubbleSeconds)}"
        );
        w.WriteLine(
            $"throughput: {(c.FlopsPerSecondPerGpu / 1e12).ToString("0.0", CultureInfo.InvariantCulture)} "
                + $"TFLOP/s per GPU "
                + $"({P(c.FlopsPerSecondPerGpu / c.PeakFlops)} of peak, recomputation included); "
                + "model FLOP utilisation "
                + $"{P(c.Mfu)}"
        );
        var fullest = c.Stages.MaxBy(s => s.PeakBytes);
        string parts =
            fullest == null
                ? ""
                : $" (parameters {Analysis.Units.Bytes(fullest.ParamBytes - fullest.StateBytes)}, optimizer state "
                    + $"{Analysis.Units.Bytes(fullest.StateBytes)}, activations, gradients and workspace "
                    + $"{Analysis.Units.Bytes(Math.Max(0, fullest.PeakBytes - fullest.ParamBytes))})";
        w.WriteLine(
            $"memory: {Analysis.Units.Bytes(c.PeakBytes)} at the peak of the fullest device{parts}, "
                + $"{(c.Fits ? "fits" : "does NOT fit")} in "
                + $"{Analysis.Units.Bytes(c.HbmBytes)}"
        );
    }

    /// <summary>The same as one JSON object (keys: step_s, tokens_per_s, tflops_per_gpu, mfu, memory_gib, fits, and the
    /// breakdown).</summary>
    public static void PrintJson(StepCost c, Cluster cluster, double tokens, TextWriter w)
    {
        var o = new Dictionary<string, object?>
        {
            ["cluster"] = cluster.Name,
            ["gpus"] = c.Devices,
            ["step_s"] = c.StepSeconds,
            ["tokens_per_s"] = tokens > 0 ? tokens / c.StepSeconds : null,
            ["tflops_per_gpu"] = c.FlopsPerSecondPerGpu / 1e12,
            ["mfu"] = c.Mfu,
            ["memory_gib"] = c.PeakBytes / (1024.0 * 1024 * 1024),
            ["memory_params_gib"] = c.Stages.MaxBy(s => s.PeakBytes) is { } f
                ? (f.ParamBytes - f.StateBytes) / (1024.0 * 1024 * 1024)
                : null,
            ["memory_optimizer_state_gib"] = c.Stages.MaxBy(s => s.PeakBytes) is { } g
                ? g.StateBytes / (1024.0 * 1024 * 1024)
                : null,
            ["fits"] = c.Fits,
            ["compute_s"] = c.ComputeSeconds,
            ["exposed_comm_s"] = c.Collectives.ToDictionary(k => k.Kind, k => k.ExposedSeconds),
            ["bubble_s"] = c.BubbleSeconds,
            ["kernel_s"] = c.Kernels.ToDictionary(k => k.Kind, k => k.Seconds),
        };
        w.WriteLine(JsonSerializer.Serialize(o, new JsonSerializerOptions { WriteIndented = true }));
    }
}
