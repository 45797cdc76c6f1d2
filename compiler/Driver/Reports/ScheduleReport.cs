using System.Globalization;
using ParallelCompiler.IR;
using ParallelCompiler.Syntax;

namespace ParallelCompiler.Driver.Reports;

/// <summary><c>mplc compile --schedule</c>: the pipeline schedule as a table, device by time slot, and each device's
/// bubble.</summary>
public static class ScheduleReport
{
    /// <summary>Writes the schedule of <paramref name="module"/> to <paramref name="stderr"/>.</summary>
    public static void Print(Operation module, TextWriter stderr)
    {
        var func = module.EntryFunction() ?? throw new UserErrorException("the module has no entry function");
        var sched =
            func.Regions[0].Entry.Operations.FirstOrDefault(o => o.Name == "pipe.schedule")
            ?? throw new UserErrorException(
                "--schedule: the program is not pipelined (no @pipeline, or the pipeline "
                    + "did not run pipeline-schedule)"
            );
        int m = (int)sched.IntAttr("microbatches"),
            chunks = (int)sched.IntAttr("chunks");
        var order = Dialects.Pipe.ScheduleOpDef.Order(sched.GetAttr("order"), m, chunks, msg => new IRException(msg));
        var sim = Runtime.Pipeline.Timeline.Simulate(order, Analysis.PipelineStats.SlotCost(order));
        bool split = order.Any(l => l.Any(t => t.Phase == Runtime.Pipeline.Phase.Weight));
        stderr.WriteLine(
            $"schedule {sched.StringAttr("kind")}: {m} microbatch(es) over {order.Length} pipeline "
                + $"device(s)"
                + (chunks > 1 ? $", {chunks} chunks each" : "")
                + (
                    split
                        ? "; F<i> forward, B<i> input gradient, W<i> weight gradient of microbatch i"
                        : "; F<i>/B<i> forward/backward of microbatch i"
                )
                + (chunks > 1 ? " (.c: chunk c)" : "")
                + (split ? "; each takes a slot" : "; a backward takes two slots")
        );
        stderr.Write(Analysis.PipelineStats.ScheduleTable(order, chunks));
        stderr.WriteLine(
            "bubble: "
                + string.Join(
                    ", ",
                    Enumerable
                        .Range(0, order.Length)
                        .Select(d => $"device {d} {sim.BubbleFraction(d).ToString("P1", CultureInfo.InvariantCulture)}")
                )
        );
    }
}
