using ParallelCompiler.Analysis;
using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;
using ParallelCompiler.Runtime.Pipeline;

namespace ParallelCompiler.Cost;

/// <summary>When the gradient synchronisation runs: under the backward compute after it (PyTorch DDP's and today's
/// Megatron-LM's buckets), or after the whole backward of the step (Megatron-LM as of SC'21, whose local DDP reduced
/// the gradients once every microbatch's backward was done).</summary>
public enum GradientSync
{
    Overlapped,
    AfterBackward,
}

/// <summary>One kind of collective of a step: how many, the bytes one device sends, its time, and the share not hidden
/// under compute.</summary>
public sealed record CollectiveCost(string Kind, int Count, double BytesSent, double Seconds, double ExposedSeconds);

/// <summary>One kind of kernel of a step (matmul, elementwise, row, reduction, gather): how many launches, their FLOPs
/// and HBM bytes, their time, and how many of them are limited by memory rather than arithmetic.</summary>
public sealed record KernelCost(string Kind, int Count, double Flops, double Bytes, double Seconds, int MemoryBound);

/// <summary>A pipeline device's share of a step: its compute and communication, and how long it stands idle.</summary>
public sealed record StageCost(
    int Device,
    double ComputeSeconds,
    double CommSeconds,
    double IdleSeconds,
    double PeakBytes
)
{
    /// <summary>Of the peak: the parameters (the optimizer's state included).</summary>
    public double ParamBytes { get; init; }

    /// <summary>Of those: the optimizer's state.</summary>
    public double StateBytes { get; init; }
}

/// <summary>The predicted step of a compiled program on a cluster (docs/cost-model.md defines every term).</summary>
public sealed record StepCost(
    double StepSeconds,
    double ComputeSeconds,
    double BubbleSeconds,
    IReadOnlyList<CollectiveCost> Collectives,
    IReadOnlyList<KernelCost> Kernels,
    IReadOnlyList<StageCost> Stages,
    double FlopsPerDevice,
    double ModelFlopsPerDevice,
    double PeakFlops,
    double PeakBytes,
    double HbmBytes,
    int Devices
)
{
    /// <summary>Per model stage, the seconds of one microbatch's forward (with its critical-path communication); one
    /// entry, the whole step, without a pipeline.</summary>
    public IReadOnlyList<double> StageForwardSeconds { get; init; } = [];

    /// <summary>Per model stage, the seconds of one microbatch's backward (recomputation included); under a
    /// zero-bubble schedule its input-gradient part (B) only.</summary>
    public IReadOnlyList<double> StageBackwardSeconds { get; init; } = [];

    /// <summary>Per model stage, the seconds of one microbatch's weight gradient (W) when a zero-bubble schedule
    /// splits it from the backward, else 0.</summary>
    public IReadOnlyList<double> StageWeightSeconds { get; init; } = [];

    /// <summary>What runs once a step outside the pipeline's tasks (the optimizer), gradient synchronisation
    /// excepted.</summary>
    public double StepPhaseSeconds { get; init; }

    /// <summary>The gradient synchronisation's collectives, all of them (<see cref="GradientSync"/> decides how much
    /// is exposed).</summary>
    public double SyncSeconds { get; init; }

    /// <summary>Communication on the critical path.</summary>
    public double ExposedCommSeconds => Collectives.Sum(c => c.ExposedSeconds);

    /// <summary>FLOP/s a GPU achieves, counting every FLOP the program does (recomputed forwards included, as
    /// Megatron-LM counts).</summary>
    public double FlopsPerSecondPerGpu => FlopsPerDevice / StepSeconds;

    /// <summary>Model FLOP utilisation: the FLOPs of the model without recomputation, over the peak.</summary>
    public double Mfu => ModelFlopsPerDevice / StepSeconds / PeakFlops;

    /// <summary>True when the peak memory of every device fits its GPU.</summary>
    public bool Fits => PeakBytes <= HbmBytes;
}

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
public static class CostModel
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
                    }
            );
            // A device's gradient synchronisation and optimizer follow its own last task; the setup precedes all.
            double end = timeline.Makespan;
            for (int d = 0; d < p; d++)
            {
                double finish = timeline.Tasks.Where(t => t.Device == d).Select(t => t.End).DefaultIfEmpty(0).Max();
                end = Math.Max(end, finish + Exposed(d) + after[d]);
            }
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

    /// <summary>
    /// The roofline time of a kernel launch or a bare tensor op: its FLOPs at the dtype's peak times the matmul
    /// shape efficiency, against the bytes it reads and writes at HBM bandwidth, plus the launch overhead.
    /// </summary>
    public static double KernelSeconds(Operation op, Operation module, Cluster cluster) =>
        Kernel(
            op,
            module
                .Functions()
                .Where(f => f.GetAttr("kernel") != null)
                .ToDictionary(f => f.StringAttr("sym_name"), StringComparer.Ordinal),
            cluster
        ).Seconds;

    /// <summary>A kernel's kind, FLOPs, HBM bytes and roofline time (<see cref="KernelSeconds"/>).</summary>
    private static (string Kind, double Flops, double Bytes, double Seconds, bool MemoryBound) Kernel(
        Operation op,
        IReadOnlyDictionary<string, Operation> kernels,
        Cluster cluster
    )
    {
        if (
            op.Dialect is not ("tensor" or "kernel")
            || op.Name is "tensor.param" or "tensor.constant"
            || op.Results.Count != 1
        )
            return ("", 0, 0, 0, false);
        double flops = DeviceStats.OpFlops(op);
        double bytes = op
            .Operands.Concat<Value>(op.Results)
            .Sum(v => (double)v.TensorType.NumElements * v.TensorType.DType.Size());
        var body = op.Name == "kernel.launch" ? kernels[op.StringAttr("callee")] : null;
        var matmul =
            body != null ? body.Regions[0].Entry.Operations.FirstOrDefault(o => o.Name == "tensor.matmul")
            : op.Name == "tensor.matmul" ? op
            : null;
        double mm = 0,
            n = 0,
            k = 0;
        if (matmul != null)
        {
            // m x k by k x n, batch dimensions folded into m.
            var r = matmul.Result.TensorType;
            n = r.Rank >= 1 && matmul.OperandType(1).Rank >= 2 ? r.Shape[^1] : 1;
            k = matmul.OperandType(0).Shape[^1];
            mm = r.NumElements / Math.Max(1, n);
        }
        // A matmul runs at its operands' peak (a half-precision one may return its f32 accumulator).
        var dtype = matmul != null ? matmul.OperandType(0).DType : op.Result.TensorType.DType;
        var (seconds, memoryBound) = Roofline(flops, bytes, dtype, matmul != null ? (mm, n, k) : null, cluster);
        string kind =
            body?.GetAttr("kernel") is StringAttr ks ? ks.Value
            : matmul != null ? "matmul"
            : "elementwise";
        return (kind, flops, bytes, seconds, memoryBound);
    }

    /// <summary>
    /// One kernel's time: <paramref name="flops"/> at the dtype's peak times the efficiency (for a matmul of
    /// <paramref name="matmul"/> = m, n, k, each dimension d at d / (d + half) of it), against <paramref
    /// name="bytes"/> at HBM bandwidth, plus the launch; and whether memory is the limit.
    /// </summary>
    public static (double Seconds, bool MemoryBound) Roofline(
        double flops,
        double bytes,
        DType dtype,
        (double M, double N, double K)? matmul,
        Cluster cluster
    )
    {
        var e = cluster.Efficiency;
        double eff = e.Matmul;
        if (matmul is var (mm, n, k))
            eff *= Shape(mm, e.MatmulHalfDim) * Shape(n, e.MatmulHalfDim) * Shape(k, e.MatmulHalfDim);
        double computeSeconds = flops / (cluster.Peak(dtype) * eff);
        double memorySeconds = bytes / (cluster.HbmBytesPerSecond * e.Memory);
        return (Math.Max(computeSeconds, memorySeconds) + e.KernelLaunchSeconds, memorySeconds > computeSeconds);
    }

    private static double Shape(double d, double half) => d / (d + half);

    /// <summary>
    /// A collective's kind, the bytes one device sends and its alpha-beta time over the links of its group
    /// (docs/cost-model.md); kind null for what moves nothing (a slice, a group of one, the microbatch axis).
    /// </summary>
    public static (string? Kind, double Bytes, double Seconds) Collective(
        Operation op,
        DeviceMesh mesh,
        Cluster cluster
    )
    {
        if (
            op.Operands.Count == 0
            || op.Name is "dist.all_slice" or "pipe.recv" or "pipe.schedule" or "dist.recv" or "dist.wait"
        )
            return (null, 0, 0);
        // A started bucket is one collective of all its operands.
        var start = op.Def as Dialects.Dist.CollectiveStartOpDef;
        double m =
            start == null
                ? (double)op.OperandType(0).NumElements * op.OperandType(0).DType.Size()
                : op.Operands.Sum(v => (double)((TensorType)v.Type).NumElements * ((TensorType)v.Type).DType.Size());
        if (op.Name is "pipe.send" or "dist.send" or "dist.collective_permute")
        {
            // Point to point: one message on the link between the two devices (across nodes unless the peer is in this
            // one).
            string? axisName = op.GetAttr("axis") is StringAttr a ? a.Value : PipelineAxis(op.ParentOp);
            bool sameNode =
                axisName != null && mesh.AxisNames.Contains(axisName) && SpansOneNode(mesh, [axisName], cluster);
            return (op.Name == "pipe.send" ? "pipe send" : op.Name[5..], m, PointToPointSeconds(m, sameNode, cluster));
        }
        var axes = op.GetAttr("axes") is ArrayAttr arr
            ? arr.AsStrings().Where(x => x != ModuleOp.MicrobatchAxis).ToArray()
            : [];
        int n = (int)mesh.Product(axes);
        if (n <= 1)
            return (null, 0, 0);
        string name = start?.SyncName ?? op.Name;
        string kind = name[5..];
        double sent = DeviceStats.RingBytesSent(name, n, m);
        return (kind, sent, CollectiveSeconds(kind, m, mesh.Group(0, axes), cluster));
    }

    /// <summary>
    /// The alpha-beta time of one collective of <paramref name="kind"/> (all_reduce, all_gather, reduce_scatter,
    /// all_to_all) whose operand is <paramref name="bytes"/> a device, over the devices <paramref name="group"/>
    /// (global ranks, 8 a node in rank order): a ring inside one node on NVLink; across nodes an all-reduce is
    /// hierarchical or a tree, whichever is faster, and the other kinds a ring on InfiniBand.
    /// </summary>
    public static double CollectiveSeconds(string kind, double bytes, IReadOnlyList<int> group, Cluster cluster)
    {
        int n = group.Count;
        if (n <= 1)
            return 0;
        double m = bytes;
        int nodes = group.Select(r => r / cluster.GpusPerNode).Distinct().Count();
        int perNode = n / nodes;
        double eff = cluster.Efficiency.Network;
        double Ring(string k, double size, int members, Link l)
        {
            if (members <= 1)
                return 0;
            double bw = l.BytesPerSecond * eff,
                share = (members - 1.0) / members;
            return k switch
            {
                "all_reduce" => 2 * share * size / bw + 2 * (members - 1) * l.LatencySeconds,
                _ => share * size / bw + (members - 1) * l.LatencySeconds,
            };
        }
        // The message size each kind moves: a gather's whole result, a scatter's or all-to-all's input.
        double size = kind == "all_gather" ? m * n : m;
        if (nodes == 1)
            return Ring(kind, size, n, cluster.IntraNode);
        if (kind != "all_reduce")
            return Ring(kind, size, n, cluster.InterNode);
        // Hierarchical: reduce-scatter inside each node, all-reduce of one node's share across nodes, all-gather
        // back; or a tree across all GPUs (NCCL picks it for small messages): whichever is faster.
        double hier =
            Ring("reduce_scatter", m, perNode, cluster.IntraNode)
            + Ring("all_reduce", m / perNode, nodes, cluster.InterNode)
            + Ring("all_gather", m, perNode, cluster.IntraNode);
        double tree =
            2 * Math.Ceiling(Math.Log2(n)) * cluster.InterNode.LatencySeconds
            + 2 * m / (cluster.InterNode.BytesPerSecond * eff);
        return Math.Min(hier, tree);
    }

    /// <summary>One message of <paramref name="bytes"/> between two GPUs, on NVLink when they share a node.</summary>
    public static double PointToPointSeconds(double bytes, bool sameNode, Cluster cluster)
    {
        var link = sameNode ? cluster.IntraNode : cluster.InterNode;
        return bytes / (link.BytesPerSecond * cluster.Efficiency.Network) + link.LatencySeconds;
    }

    /// <summary>True when every group over <paramref name="axes"/> lies inside one node (ranks are row-major over the
    /// mesh).</summary>
    private static bool SpansOneNode(DeviceMesh mesh, string[] axes, Cluster cluster) =>
        mesh.Group(0, axes).Select(r => r / cluster.GpusPerNode).Distinct().Count() == 1;
}
