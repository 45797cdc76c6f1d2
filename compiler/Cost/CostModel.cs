using ParallelCompiler.Analysis;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Pipeline;

namespace ParallelCompiler.Cost;

/// <summary>
/// Predicts the step time, throughput and memory of a per-device program (after spmdize) on a
/// <see cref="Cluster"/>. Compute: every kernel (the program's kernels after form-kernels, so fusion counts) as a
/// roofline of its FLOPs at the dtype's peak, scaled by a matmul's shape efficiency, against its bytes at HBM
/// bandwidth. Communication: every collective by kind, group and bytes as alpha-beta over the links its group
/// spans (NVLink inside a node, InfiniBand across; all-reduce across nodes hierarchical, or a tree when that is
/// faster). Gradient synchronisation (collectives whose results only feed the optimizer) overlaps the compute
/// after it; other collectives are on the critical path. Pipelines: the compiled schedule played on per-stage
/// times. Memory: the program's peak live bytes per device, held microbatches included.
/// </summary>
public static partial class CostModel
{
    /// <summary>The cost of <paramref name="module"/> (per-device, before or after form-kernels) on <paramref
    /// name="cluster"/>.</summary>
    public static StepCost Of(Operation module, Cluster cluster, GradientSync gradientSync = GradientSync.Overlapped)
    {
        if (!module.IsSpmd())
            throw new IRException("the cost model needs the per-device program: the pipeline must " + "run spmdize");
        var mesh = module.DeviceMesh();
        var physical = module.PhysicalMesh();
        if (physical.DeviceCount > cluster.Gpus)
            throw new ClusterException(
                $"the mesh ({physical}) needs {physical.DeviceCount} GPUs; cluster "
                    + $"'{cluster.Name}' has {cluster.Gpus} ({cluster.Nodes} nodes of {cluster.GpusPerNode})"
            );
        var func = module.EntryFunction() ?? throw new IRException("the module has no entry function");
        // Times come from the kernels as the back end forms them.
        var kernels = module.Functions().Any(f => f.GetAttr("kernel") != null) ? module : FormedKernels(module);
        var kfunc = kernels.EntryFunction()!;
        var sync = OptimizerSide(kfunc);
        var pipeline = PipelineStats.Of(kfunc);
        var entry = kfunc.Regions[0].Entry;
        // Every layer of a stack launches the same kernels and collectives: each is costed once.
        var kernelCache = new Dictionary<
            string,
            (string Kind, double Flops, double Bytes, double Seconds, bool Memory)
        >(StringComparer.Ordinal);
        var functions = kernels
            .Functions()
            .Where(f => f.GetAttr("kernel") != null)
            .ToDictionary(f => f.StringAttr("sym_name"), StringComparer.Ordinal);
        (string Kind, double Flops, double Bytes, double Seconds, bool MemoryBound) KernelOnce(Operation op)
        {
            if (op.Name != "kernel.launch")
                return Kernel(op, functions, cluster);
            string callee = op.StringAttr("callee");
            if (!kernelCache.TryGetValue(callee, out var k))
                kernelCache[callee] = k = Kernel(op, functions, cluster);
            return k;
        }
        var collectiveCache = new Dictionary<string, (string? Kind, double Bytes, double Seconds)>(
            StringComparer.Ordinal
        );
        (string? Kind, double Bytes, double Seconds) CollectiveOnce(Operation op)
        {
            string key =
                $"{op.Name}|{(op.GetAttr("axes") is ArrayAttr a ? string.Join(",", a.AsStrings()) : "")}|"
                + $"{(op.GetAttr("axis") is StringAttr x ? x.Value : "")}|"
                + string.Join(",", op.Operands.Select(v => v.Type.ToString()));
            if (!collectiveCache.TryGetValue(key, out var c))
                collectiveCache[key] = c = Collective(op, physical, cluster);
            return c;
        }
        int m = Microbatches(kfunc);
        int p = pipeline?.Devices.Count ?? 1;
        // Per pipeline stage and phase: seconds per microbatch of compute and of critical-path communication.
        int stages = pipeline?.StageFlops.Count ?? 1;
        var fwd = new double[stages];
        var bwd = new double[stages];
        var wgt = new double[stages]; // weight gradients, split from the backward by zero-bubble schedules
        // Per stage: seconds a microbatch's started sends (pipe.send_start) of its forward and of its backward take,
        // beside the stage's next tasks; the receiving stage waits for them.
        var sendFwd = new double[stages];
        var sendBwd = new double[stages];
        double step = 0;
        // Per pipeline device: what runs once a step before the schedule (setup) and after it (the optimizer), the
        // gradient synchronisation, and the compute that follows the device's first synchronising collective (the
        // last microbatch's, which the synchronisation can run under). Each device synchronises its own stages'
        // gradients, at the same time as the others.
        var before = new double[p];
        var after = new double[p];
        var syncOn = new double[p];
        var computeAfterSync = new double[p];
        var syncStarted = new bool[p];
        var comm = new double[p];
        var busy = new double[p];
        // FLOPs as the program does them, and those of the recomputed forward (not the model's own).
        var flopsOn = new double[p];
        var recomputedOn = new double[p];
        // Per pipeline device (its stages' ops), by kind: how many, bytes sent, seconds, and the seconds of gradient
        // synchronisation.
        var kernelKinds = Enumerable
            .Range(0, p)
            .Select(_ => new Dictionary<string, KernelCost>(StringComparer.Ordinal))
            .ToArray();
        var collectives = Enumerable
            .Range(0, p)
            .Select(_ => new Dictionary<string, (int Count, double Bytes, double Seconds, double Sync)>(
                StringComparer.Ordinal
            ))
            .ToArray();
        // Started collectives run on a communication stream beside the compute of their stage and phase (per
        // microbatch): each lane's clock, when its stream is next free, and when each start's collective ends. A wait
        // costs only what is left of its collective (the exposed part).
        var lanes = new Dictionary<string, (double Now, double CommFree)>(StringComparer.Ordinal);
        var inFlight = new Dictionary<Operation, (double End, string Kind)>(ReferenceEqualityComparer.Instance);
        var asyncOn = Enumerable
            .Range(0, p)
            .Select(_ => new Dictionary<string, (double Seconds, double Exposed)>(StringComparer.Ordinal))
            .ToArray();
        // A pipeline's step-phase starts of microbatch sums, which the runtime issues during the schedule (after the
        // stage's last task that makes a gradient): costed once the timeline says how early, with their waits.
        var earlyStarts = new List<(Operation Start, int Stage, double Seconds)>();
        var earlyWaits = new List<(Operation Start, int Stage, string Kind, double Now)>();
        foreach (var op in entry.Operations)
        {
            int stage = op.GetAttr("stage") is IntAttr st ? (int)st.Value : 0;
            string phase = op.GetAttr("phase") is StringAttr ph ? ph.Value : "forward";
            bool once = phase is "step" or "setup"; // after or before the schedule, not per microbatch
            int times = pipeline == null || once ? 1 : m;
            double seconds;
            bool isComm = op.Dialect is "dist" or "pipe";
            string lane = $"{stage}|{phase}";
            var (now, free) = lanes.GetValueOrDefault(lane);
            // Costed after the backward, a started collective is gradient synchronisation like a blocking one.
            bool started = gradientSync == GradientSync.Overlapped;
            if (op.Name == Dialects.Dist.WaitOpDef.OpName && !started)
                continue;
            if (op.Name == Dialects.Dist.WaitOpDef.OpName && pipeline != null && IssuedEarly(op, phase))
            {
                var start = Dialects.Dist.WaitOpDef.StartOf(op);
                earlyWaits.Add((start, stage, inFlight[start].Kind, now));
                continue;
            }
            if (op.Name == Dialects.Dist.WaitOpDef.OpName)
            {
                var (end, kind) = inFlight[Dialects.Dist.WaitOpDef.StartOf(op)];
                seconds = Math.Max(0, end - now);
                lanes[lane] = (now + seconds, free);
                var a = asyncOn[stage % p].GetValueOrDefault(kind);
                asyncOn[stage % p][kind] = (a.Seconds, a.Exposed + seconds * times);
                comm[stage % p] += seconds * times;
                if (seconds == 0)
                    continue;
            }
            else if (isComm)
            {
                // devices are numbered without the microbatch axis
                var (kind, bytes, secs) = CollectiveOnce(op);
                if (kind == null)
                    continue;
                seconds = secs;
                bool async = op.Def is Dialects.Dist.CollectiveStartOpDef && started;
                // A collective of every microbatch (the gather of a sequence-parallel activation for a weight's
                // gradient) runs in that microbatch's backward, even when only the optimizer reads what it feeds.
                bool overlapped = sync.Contains(op) && times == 1 && !async;
                var mine = collectives[stage % p];
                var c = mine.GetValueOrDefault(kind);
                mine[kind] = (
                    c.Count + times,
                    c.Bytes + bytes * times,
                    c.Seconds + secs * times,
                    c.Sync + (overlapped ? secs * times : 0)
                );
                if (op.Name == "pipe.send_start" && pipeline != null && phase is ("forward" or "backward"))
                {
                    (phase == "forward" ? sendFwd : sendBwd)[stage] += secs;
                    continue;
                }
                if (async && pipeline != null && IssuedEarly(op, phase))
                {
                    earlyStarts.Add((op, stage, secs));
                    inFlight[op] = (0, kind);
                    var a = asyncOn[stage % p].GetValueOrDefault(kind);
                    asyncOn[stage % p][kind] = (a.Seconds + secs * times, a.Exposed);
                    continue;
                }
                if (async)
                {
                    double begin = Math.Max(now, free);
                    inFlight[op] = (begin + secs, kind);
                    lanes[lane] = (now, begin + secs);
                    var a = asyncOn[stage % p].GetValueOrDefault(kind);
                    asyncOn[stage % p][kind] = (a.Seconds + secs * times, a.Exposed);
                    continue;
                }
                comm[stage % p] += secs * times;
                if (overlapped)
                {
                    syncOn[stage % p] += secs * times;
                    syncStarted[stage % p] = true;
                    continue;
                }
                // A blocking collective is on the compute clock (its own channel: it does not queue behind a bucket).
                lanes[lane] = (now + secs, free);
            }
            else
            {
                var k = KernelOnce(op);
                seconds = k.Seconds;
                flopsOn[stage % p] += k.Flops * times;
                if (op.GetAttr("recompute") != null)
                    recomputedOn[stage % p] += k.Flops * times;
                if (seconds == 0)
                    continue;
                var kinds = kernelKinds[stage % p];
                var was = kinds.GetValueOrDefault(k.Kind) ?? new KernelCost(k.Kind, 0, 0, 0, 0, 0);
                kinds[k.Kind] = new KernelCost(
                    k.Kind,
                    was.Count + times,
                    was.Flops + k.Flops * times,
                    was.Bytes + k.Bytes * times,
                    was.Seconds + seconds * times,
                    was.MemoryBound + (k.MemoryBound ? times : 0)
                );
                busy[stage % p] += seconds * times;
                lanes[lane] = (now + seconds, free);
                if (syncStarted[stage % p])
                    computeAfterSync[stage % p] += seconds; // after the first sync op: the last microbatch only
            }
            if (pipeline != null && !once)
            {
                if (phase == "backward")
                    bwd[stage] += seconds;
                else if (phase == "weight")
                    wgt[stage] += seconds;
                else
                    fwd[stage] += seconds;
            }
            else if (pipeline != null)
                (phase == "setup" ? before : after)[stage % p] += seconds * times;
            else
                step += seconds * times;
        }
        // Gradient synchronisation runs under the compute that follows its first collective; the rest is exposed.
        double Exposed(int d) =>
            syncOn[d] - (gradientSync == GradientSync.Overlapped ? Math.Min(syncOn[d], computeAfterSync[d]) : 0);
        double bubble = 0,
            stepCompute = step;
        var stageCosts = new List<StageCost>();
        if (pipeline != null)
        {
            var sched = entry.Operations.First(o => o.Name == "pipe.schedule");
            var order = Dialects.Pipe.ScheduleOpDef.Order(
                sched.GetAttr("order"),
                m,
                (int)sched.IntAttr("chunks"),
                msg => new IRException(msg)
            );
            bool staged = entry.Operations.Any(o => o.GetAttr("stage") != null);
            var timeline = Timeline.Simulate(
                order,
                (s, ph) =>
                    ph switch
                    {
                        Phase.Forward => fwd[staged ? s : 0],
                        Phase.Backward => bwd[staged ? s : 0],
                        _ => wgt[staged ? s : 0],
                    },
                (s, ph) =>
                    ph switch
                    {
                        Phase.Forward => sendFwd[staged ? s : 0],
                        Phase.Backward => sendBwd[staged ? s : 0],
                        _ => 0,
                    }
            );
            // A device's gradient synchronisation and optimizer follow its own last task; the setup precedes all.
            var finish = new double[p];
            foreach (var t in timeline.Tasks.Where(t => t.Device < p))
                finish[t.Device] = Math.Max(finish[t.Device], t.End);
            double end = timeline.Makespan;
            for (int d = 0; d < p; d++)
                end = Math.Max(end, finish[d] + Exposed(d) + after[d]);
            step = before.Max() + end;
            // An early start begins when its stage's last B or W task ends, this long before the step phase; the
            // starts of a stage follow each other on its communication stream.
            var lastEnd = new Dictionary<int, double>();
            foreach (var t in timeline.Tasks.Where(t => t.Task.Phase != Phase.Forward))
            {
                int s = staged ? t.Task.Chunk * p + t.Device : 0;
                lastEnd[s] = Math.Max(lastEnd.GetValueOrDefault(s), t.End);
            }
            var ends = new Dictionary<Operation, double>(ReferenceEqualityComparer.Instance);
            var streamFree = new Dictionary<int, double>();
            foreach (var (start, s, secs) in earlyStarts)
            {
                double begin = Math.Max(
                    lastEnd.GetValueOrDefault(staged ? s : 0, timeline.Makespan) - timeline.Makespan,
                    streamFree.GetValueOrDefault(s, double.NegativeInfinity)
                );
                ends[start] = streamFree[s] = begin + secs;
            }
            // A wait's clock is its lane's when it was met, later by what the lane's earlier such waits exposed.
            var shift = new Dictionary<int, double>();
            foreach (var (start, s, kind, now) in earlyWaits)
            {
                double exposed = Math.Max(0, ends[start] - now - shift.GetValueOrDefault(s));
                shift[s] = shift.GetValueOrDefault(s) + exposed;
                step += exposed;
                comm[s % p] += exposed;
                var a = asyncOn[s % p].GetValueOrDefault(kind);
                asyncOn[s % p][kind] = (a.Seconds, a.Exposed + exposed);
            }
            // Each pipeline device runs its stages' ops and the unstaged ones.
            var onDevice = Enumerable.Range(0, p).Select(_ => new List<Operation>()).ToArray();
            foreach (var op in entry.Operations)
                if (op.GetAttr("stage") is IntAttr st)
                    onDevice[(int)(st.Value % p)].Add(op);
                else
                    foreach (var mine in onDevice)
                        mine.Add(op);
            for (int d = 0; d < p; d++)
            {
                var st = DeviceStats.Of(kfunc, mesh, RankOnPipelineDevice(kfunc, mesh, d), pipeline, onDevice[d]);
                double idle = timeline.Makespan - timeline.Busy(d);
                bubble = Math.Max(bubble, idle);
                stageCosts.Add(
                    new StageCost(d, busy[d], comm[d], idle, st.PeakBytes)
                    {
                        ParamBytes = st.ParamBytes,
                        StateBytes = st.StateBytes,
                    }
                );
            }
        }
        else
        {
            var st = DeviceStats.Of(kfunc, mesh, 0);
            stageCosts.Add(
                new StageCost(0, busy[0], comm[0], 0, st.PeakBytes)
                {
                    ParamBytes = st.ParamBytes,
                    StateBytes = st.StateBytes,
                }
            );
        }
        if (pipeline == null)
            step += Exposed(0);
        // The busiest pipeline device stands for the step (without a pipeline there is one).
        int critical = Enumerable.Range(0, p).MaxBy(d => busy[d] + comm[d]);
        double syncSeconds = syncOn[critical],
            hidden = syncSeconds - Exposed(critical);
        var list = collectives[critical]
            .OrderBy(c => c.Key, StringComparer.Ordinal)
            .Select(c =>
            {
                double exposedSync = syncSeconds > 0 ? c.Value.Sync * (1 - hidden / syncSeconds) : 0;
                var a = asyncOn[critical].GetValueOrDefault(c.Key);
                return new CollectiveCost(
                    c.Key,
                    c.Value.Count,
                    c.Value.Bytes,
                    c.Value.Seconds,
                    c.Value.Seconds - c.Value.Sync - a.Seconds + exposedSync + a.Exposed
                );
            })
            .ToList();
        double peakBytes = stageCosts.Max(s => s.PeakBytes);
        return new StepCost(
            step,
            busy[critical],
            bubble,
            list,
            kernelKinds[critical].Values.OrderByDescending(k => k.Seconds).ToList(),
            stageCosts,
            flopsOn.Average(),
            flopsOn.Average() - recomputedOn.Average(),
            cluster.Peak(MainDType(func)),
            peakBytes,
            cluster.HbmBytes,
            physical.DeviceCount
        )
        {
            StageForwardSeconds = pipeline != null ? fwd : [stepCompute],
            StageBackwardSeconds = pipeline != null ? bwd : [0.0],
            StageWeightSeconds = pipeline != null ? wgt : [0.0],
            StepPhaseSeconds = pipeline != null ? before.Max() + after[critical] : 0,
            SyncSeconds = syncSeconds,
        };
    }

    /// <summary>The module with its kernels formed, on a copy (the module itself is left as it is).</summary>
    private static Operation FormedKernels(Operation module)
    {
        var copy = module.Clone();
        new Passes.FormKernels().Run(copy);
        return copy;
    }

    /// <summary>
    /// Whether the runtime's pipeline executor issues the start (or the start of the wait) <paramref name="op"/>
    /// during the schedule: a step-phase start all of whose operands are sums over the microbatch axis alone of
    /// values the schedule's tasks make.
    /// </summary>
    private static bool IssuedEarly(Operation op, string phase)
    {
        if (phase != "step")
            return false;
        var start = op.Name == Dialects.Dist.WaitOpDef.OpName ? Dialects.Dist.WaitOpDef.StartOf(op) : op;
        return start.Def is Dialects.Dist.CollectiveStartOpDef
            && start.Operands.All(v =>
                v.DefiningOp is { Name: "dist.all_reduce" } sum
                && sum.GetAttr("axes") is ArrayAttr axes
                && axes.AsStrings() is [var only]
                && only == ModuleOp.MicrobatchAxis
                && sum.Operands[0].DefiningOp is { } made
                && made.GetAttr("phase") is not StringAttr { Value: "step" or "setup" }
            );
    }

    private static int Microbatches(Operation func) =>
        func.Regions[0].Entry.Operations.FirstOrDefault(o => o.Name == "pipe.schedule") is { } s
            ? (int)s.IntAttr("microbatches")
            : 1;

    /// <summary>The mesh axis a pipelined function's stages run over, or null.</summary>
    private static string? PipelineAxis(Operation? func) =>
        func?.GetAttr("pipeline") is DictAttr pipe && pipe.Entries.First(e => e.Key == "axis").Value is StringAttr axis
            ? axis.Value
            : null;

    private static int RankOnPipelineDevice(Operation func, DeviceMesh mesh, int d)
    {
        if (PipelineAxis(func) is not { } axis)
            return 0;
        var coords = new int[mesh.AxisNames.Count];
        coords[mesh.AxisNames.ToList().IndexOf(axis)] = d;
        return mesh.RankOf(coords);
    }

    /// <summary>The element type most of the program's matmul work is in (its peak is the one utilisation is measured
    /// against).</summary>
    private static DType MainDType(Operation func) =>
        func.Walk()
            .Where(o => o.Name == "tensor.matmul")
            .GroupBy(o => o.OperandType(0).DType)
            .OrderByDescending(g => g.Sum(DeviceStats.OpFlops))
            .Select(g => g.Key)
            .DefaultIfEmpty(DType.F32)
            .First();

    /// <summary>
    /// Ops whose results reach only parameter updates (the optimizer and the gradient synchronisation before it):
    /// nothing the step returns waits for them, so their collectives may run under later compute.
    /// </summary>
    private static HashSet<Operation> OptimizerSide(Operation func)
    {
        var side = new HashSet<Operation>(ReferenceEqualityComparer.Instance);
        var ops = func.Regions[0].Entry.Operations.ToList();
        for (int i = ops.Count - 1; i >= 0; i--)
        {
            var op = ops[i];
            if (op.Name == "train.update")
            {
                side.Add(op);
                continue;
            }
            if (op.Results.Count > 0 && op.Results.All(r => r.HasUses && r.Uses.All(u => side.Contains(u.Op))))
                side.Add(op);
        }
        return side;
    }
}
