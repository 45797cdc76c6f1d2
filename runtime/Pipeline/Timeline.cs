namespace ParallelCompiler.Runtime.Pipeline;

/// <summary>One task placed in time on one device.</summary>
public readonly record struct TimedTask(int Device, PipelineTask Task, double Start, double End);

/// <summary>
/// A pipeline schedule played out in simulated time: each device runs its tasks in order, a task starts when its
/// device is free and its inputs exist (the forward of the previous stage, or the backward of the next stage and
/// its own forward; a weight gradient, its own backward). Costs come from the compiler's estimate or from
/// measurements; the idle time that remains is the bubble.
/// </summary>
public sealed class Timeline
{
    /// <summary>Every task with its start and end, in the order they were placed.</summary>
    public IReadOnlyList<TimedTask> Tasks { get; }

    /// <summary>When the last task ends.</summary>
    public double Makespan { get; }

    /// <summary>Number of devices.</summary>
    public int Devices { get; }

    private Timeline(List<TimedTask> tasks, int devices)
    {
        Tasks = tasks;
        Devices = devices;
        Makespan = tasks.Count == 0 ? 0 : tasks.Max(t => t.End);
    }

    /// <summary>
    /// Simulates <paramref name="schedule"/> (per device, as <see cref="Schedule.Build"/> gives it); model stage
    /// <c>chunk * devices + device</c> costs <paramref name="cost"/>(stage, phase) per microbatch. A started send of
    /// what a task of stage s and phase ph gives another stage takes <paramref name="transfer"/>(s, ph) after the
    /// task ends, beside the sender's next tasks: the receiving task starts no earlier than its arrival.
    /// </summary>
    public static Timeline Simulate(
        IReadOnlyList<List<PipelineTask>> schedule,
        Func<int, Phase, double> cost,
        Func<int, Phase, double>? transfer = null
    )
    {
        int p = schedule.Count;
        int stages = p * (schedule.SelectMany(l => l).Select(t => t.Chunk).DefaultIfEmpty(0).Max() + 1);
        var done = new Dictionary<(int Stage, int Mb, Phase Phase), double>();
        bool training = schedule.Any(l => l.Any(t => t.Phase == Phase.Backward));
        var next = new int[p];
        var free = new double[p];
        var placed = new List<TimedTask>();
        int remaining = schedule.Sum(l => l.Count);
        while (remaining > 0)
        {
            bool progress = false;
            for (int d = 0; d < p; d++)
            {
                while (next[d] < schedule[d].Count)
                {
                    var task = schedule[d][next[d]];
                    int stage = task.Chunk * p + d;
                    double? ready = Ready(stage, task, stages, training, done, transfer);
                    if (ready == null)
                        break;
                    double start = Math.Max(free[d], ready.Value),
                        end = start + cost(stage, task.Phase);
                    done[(stage, task.Microbatch, task.Phase)] = end;
                    free[d] = end;
                    placed.Add(new TimedTask(d, task, start, end));
                    next[d]++;
                    remaining--;
                    progress = true;
                }
            }
            if (!progress)
                throw new InvalidOperationException("the schedule deadlocks: no device can start its next " + "task");
        }
        return new Timeline(placed, p);
    }

    private static double? Ready(
        int stage,
        PipelineTask t,
        int stages,
        bool training,
        Dictionary<(int, int, Phase), double> done,
        Func<int, Phase, double>? transfer
    )
    {
        double at = 0;
        bool Need(int s, Phase ph)
        {
            if (!done.TryGetValue((s, t.Microbatch, ph), out double e))
                return false;
            at = Math.Max(at, e + (s != stage && transfer != null ? transfer(s, ph) : 0));
            return true;
        }
        if (t.Phase == Phase.Forward)
            return stage == 0 || Need(stage - 1, Phase.Forward) ? at : null;
        if (t.Phase == Phase.Weight)
            return Need(stage, Phase.Backward) ? at : null;
        if (!Need(stage, Phase.Forward))
            return null;
        return stage == stages - 1 || Need(stage + 1, Phase.Backward) ? at : null;
    }

    /// <summary>Time device <paramref name="device"/> spends working.</summary>
    public double Busy(int device) => Tasks.Where(t => t.Device == device).Sum(t => t.End - t.Start);

    /// <summary>The idle share of device <paramref name="device"/> between time 0 and the makespan.</summary>
    public double BubbleFraction(int device) => Makespan == 0 ? 0 : 1 - Busy(device) / Makespan;
}
