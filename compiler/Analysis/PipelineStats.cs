using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Pipeline;

namespace ParallelCompiler.Analysis;

/// <summary>What one device of the pipeline axis does in one step of a pipelined program, under its schedule.</summary>
public sealed record PipelineDeviceStats(
    int Device,
    IReadOnlyList<int> Stages,
    double ForwardFlops,
    double BackwardFlops,
    double WeightFlops,
    double StepFlops,
    double Busy,
    double Bubble,
    int PeakMicrobatches,
    long PeakActivationBytes
);

/// <summary>
/// The schedule of a pipelined per-device program played out with the compiler's cost estimate: each stage's
/// forward, backward and (under zero-bubble schedules) weight gradient take time in proportion to their FLOPs
/// (transfers are taken as free), so the idle share of each device is the bubble the schedule leaves with these
/// stages. Activations held: a stage keeps, per microbatch between its forward and its backward, the values its
/// forward computes (or receives) that its backward reads; with the backward split, what its W reads is held
/// until W, and so are the values B makes for W. The schedule decides how many microbatches are in flight at once.
/// </summary>
public sealed class PipelineStats
{
    /// <summary>Per pipeline device.</summary>
    public IReadOnlyList<PipelineDeviceStats> Devices { get; }

    /// <summary>The simulated step.</summary>
    public Timeline Timeline { get; }

    /// <summary>The schedule's name, microbatches and chunks.</summary>
    public (string Kind, int Microbatches, int Chunks) Schedule { get; }

    /// <summary>The slots of a task in <see cref="ScheduleTable"/>: a backward two, or B and W one each when
    /// split.</summary>
    public static Func<int, Phase, double> SlotCost(IReadOnlyList<List<PipelineTask>> order)
    {
        bool split = order.Any(l => l.Any(x => x.Phase == Phase.Weight));
        return (_, phase) => phase == Phase.Backward && !split ? 2 : 1;
    }

    /// <summary>Forward, backward and weight-gradient FLOPs of one microbatch through each stage (the weight
    /// gradient is 0 unless the schedule splits the backward).</summary>
    public IReadOnlyList<(double Forward, double Backward, double Weight)> StageFlops { get; }

    private PipelineStats(
        IReadOnlyList<PipelineDeviceStats> devices,
        Timeline timeline,
        (string, int, int) schedule,
        IReadOnlyList<(double, double, double)> stageFlops
    )
    {
        Devices = devices;
        Timeline = timeline;
        Schedule = schedule;
        StageFlops = stageFlops;
    }

    /// <summary>The statistics of <paramref name="func"/>, or null when it has no <c>pipe.schedule</c>.</summary>
    public static PipelineStats? Of(Operation func)
    {
        var entry = func.Regions[0].Entry;
        if (entry.Operations.FirstOrDefault(o => o.Name == "pipe.schedule") is not { } sched)
            return null;
        int m = (int)sched.IntAttr("microbatches"),
            chunks = (int)sched.IntAttr("chunks");
        var order = Dialects.Pipe.ScheduleOpDef.Order(sched.GetAttr("order"), m, chunks, msg => new IRException(msg));
        int p = order.Length;
        bool staged = entry.Operations.Any(o => o.GetAttr("stage") != null);
        int stages = staged ? p * chunks : 1;
        int StageOf(Operation op) =>
            op.GetAttr("stage") is IntAttr s ? (int)s.Value
            : staged ? -1
            : 0;
        string PhaseOf(Operation op) => op.GetAttr("phase") is StringAttr s ? s.Value : "forward";

        var fwd = new double[stages];
        var bwd = new double[stages];
        var wgt = new double[stages];
        var step = new double[stages];
        // Bytes a microbatch holds on a stage: from its forward to its B, from its forward to its W, from B to W.
        var heldToB = new long[stages];
        var heldToW = new long[stages];
        var heldBToW = new long[stages];
        bool ReadBy(Value v, string phase, int s) => v.Uses.Any(u => PhaseOf(u.Op) == phase && StageOf(u.Op) == s);
        void Hold(Value v, int s)
        {
            long bytes = v.TensorType.NumElements * v.TensorType.DType.Size();
            if (ReadBy(v, "weight", s))
                heldToW[s] += bytes;
            else if (ReadBy(v, "backward", s))
                heldToB[s] += bytes;
        }
        foreach (var op in entry.Operations)
        {
            int s = StageOf(op);
            if (s < 0)
                continue;
            double f = DeviceStats.OpFlops(op);
            switch (PhaseOf(op))
            {
                case "backward":
                    bwd[s] += f;
                    foreach (var r in op.Results)
                        if (ReadBy(r, "weight", s))
                            heldBToW[s] += r.TensorType.NumElements * r.TensorType.DType.Size();
                    break;
                case "weight":
                    wgt[s] += f;
                    break;
                case "step" or "setup": // once a step; a setup value is no microbatch's activation
                    step[s] += f;
                    break;
                default:
                    fwd[s] += f;
                    // A forward value its stage's backward reads is held until that backward runs.
                    if (op.Name is not ("tensor.param" or "tensor.constant"))
                        foreach (var r in op.Results)
                            Hold(r, s);
                    break;
            }
        }
        // Arguments are read per microbatch by their stages' backward too (labels by the loss's gradient).
        foreach (var a in entry.Arguments)
        foreach (
            int s in a
                .Uses.Where(u => PhaseOf(u.Op) is "backward" or "weight")
                .Select(u => StageOf(u.Op))
                .Where(s => s >= 0)
                .Distinct()
        )
            Hold(a, s);

        var timeline = Timeline.Simulate(
            order,
            (stage, phase) =>
            {
                int s = staged ? stage : 0;
                return phase switch
                {
                    Phase.Forward => fwd[s],
                    Phase.Backward => bwd[s],
                    _ => wgt[s],
                };
            }
        );
        var devices = new List<PipelineDeviceStats>();
        for (int d = 0; d < p; d++)
        {
            var mine = staged ? Enumerable.Range(0, chunks).Select(c => c * p + d).ToList() : [0];
            int inFlight = 0,
                peakCount = 0;
            long bytes = 0,
                peakBytes = 0;
            // Forward-only, a stage's values die within its task: nothing is held between tasks.
            bool training = order[d].Any(x => x.Phase == Phase.Backward);
            bool split = order[d].Any(x => x.Phase == Phase.Weight);
            foreach (var t in training ? order[d] : [])
            {
                int s = staged ? t.Chunk * p + d : 0;
                switch (t.Phase)
                {
                    case Phase.Forward:
                        inFlight++;
                        bytes += heldToB[s] + heldToW[s];
                        break;
                    case Phase.Backward:
                        bytes += split ? heldBToW[s] - heldToB[s] : -heldToB[s] - heldToW[s];
                        inFlight -= split ? 0 : 1;
                        break;
                    default:
                        inFlight--;
                        bytes -= heldToW[s] + heldBToW[s];
                        break;
                }
                peakCount = Math.Max(peakCount, inFlight);
                peakBytes = Math.Max(peakBytes, bytes);
            }
            devices.Add(
                new PipelineDeviceStats(
                    d,
                    mine,
                    mine.Sum(s => fwd[s]) * m,
                    mine.Sum(s => bwd[s]) * m,
                    mine.Sum(s => wgt[s]) * m,
                    mine.Sum(s => step[s]),
                    timeline.Busy(d),
                    timeline.BubbleFraction(d),
                    peakCount,
                    peakBytes
                )
            );
        }
        return new PipelineStats(
            devices,
            timeline,
            (sched.StringAttr("kind"), m, chunks),
            Enumerable.Range(0, stages).Select(s => (fwd[s], bwd[s], wgt[s])).ToList()
        );
    }

    /// <summary>
    /// The schedule as a table for people: a row per pipeline device, a column per time slot, where a forward takes
    /// one slot and a backward two (the usual ratio), or, split, its B and W one each; an idle slot is blank.
    /// </summary>
    public static string ScheduleTable(IReadOnlyList<List<PipelineTask>> order, int chunks)
    {
        var t = Timeline.Simulate(order, SlotCost(order));
        int slots = (int)Math.Round(t.Makespan);
        var cells = new string[order.Count, slots];
        foreach (var task in t.Tasks)
            for (int k = (int)Math.Round(task.Start); k < (int)Math.Round(task.End); k++)
                cells[task.Device, k] = task.Task.Label(chunks);
        int width = Math.Max(3, t.Tasks.Select(x => x.Task.Label(chunks).Length).DefaultIfEmpty(2).Max());
        var sb = new System.Text.StringBuilder();
        string head = "device".PadRight(8);
        sb.Append(head)
            .AppendJoin(
                " ",
                Enumerable
                    .Range(0, slots)
                    .Select(k => k.ToString(System.Globalization.CultureInfo.InvariantCulture).PadLeft(width))
            )
            .AppendLine();
        for (int d = 0; d < order.Count; d++)
        {
            sb.Append(d.ToString(System.Globalization.CultureInfo.InvariantCulture).PadRight(8));
            sb.AppendJoin(" ", Enumerable.Range(0, slots).Select(k => (cells[d, k] ?? "").PadLeft(width))).AppendLine();
        }
        return sb.ToString();
    }
}
