using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Analysis;

/// <summary>What one device does in one run of a per-device function: arithmetic, communication and memory.</summary>
public sealed class DeviceStats
{
    /// <summary>Floating-point operations (a multiply-add counts two).</summary>
    public double Flops { get; set; }

    /// <summary>Bytes this device sends, per collective kind (ring algorithms), and how many of each.</summary>
    public SortedDictionary<string, (int Count, double Bytes)> Collectives { get; } = new(StringComparer.Ordinal);

    /// <summary>Bytes sent in all.</summary>
    public double CommBytes => Collectives.Values.Sum(c => c.Bytes);

    /// <summary>Bytes of parameters held (the optimizer's state included).</summary>
    public long ParamBytes { get; set; }

    /// <summary>Of which the optimizer's state (momentum, adam's moments, the step count).</summary>
    public long StateBytes { get; set; }

    /// <summary>Most bytes live at once: parameters, arguments and the activations not yet dead.</summary>
    public long PeakBytes { get; set; }

    /// <summary>
    /// The statistics of device <paramref name="rank"/> for <paramref name="func"/> (per-device types after
    /// spmdize; the global program counts as one device). Elementwise ops count one operation per element
    /// (normalisations and softmax a few); collectives count the bytes a device sends under ring algorithms:
    /// all_reduce 2(n-1)/n of the tensor, all_gather and all_to_all (n-1)/n of the larger side, reduce_scatter
    /// (n-1)/n of the input, all_slice none.
    /// </summary>
    public static DeviceStats Of(Operation func, DeviceMesh mesh, int rank) =>
        Of(func, mesh, rank, PipelineStats.Of(func));

    /// <summary>As <see cref="Of(Operation, DeviceMesh, int)"/> with the function's pipeline statistics already made
    /// (null: none).</summary>
    public static DeviceStats Of(Operation func, DeviceMesh mesh, int rank, PipelineStats? pipeline)
    {
        var entry = func.Regions[0].Entry;
        // A pipelined program: this device runs its stages' ops, once per microbatch except the per-step ones.
        var schedule = entry.Operations.FirstOrDefault(o => o.Name == "pipe.schedule");
        int m = schedule == null ? 1 : (int)schedule.IntAttr("microbatches"),
            p = 1,
            me = 0;
        if (
            schedule != null
            && func.GetAttr("pipeline") is DictAttr pipe
            && pipe.Entries.First(e => e.Key == "axis").Value is StringAttr axis
        )
        {
            p = mesh.Size(axis.Value);
            me = mesh.Coords(rank)[mesh.AxisNames.ToList().IndexOf(axis.Value)];
        }
        bool Mine(Operation op) => op.GetAttr("stage") is not IntAttr st || st.Value % p == me;
        return Of(func, mesh, rank, pipeline, entry.Operations.Where(Mine).ToList());
    }

    /// <summary>
    /// As <see cref="Of(Operation, DeviceMesh, int, PipelineStats?)"/> given the ops this device runs (its pipeline
    /// stages' and the unstaged ones, in program order), for a caller that splits the program over the pipeline
    /// devices once.
    /// </summary>
    public static DeviceStats Of(
        Operation func,
        DeviceMesh mesh,
        int rank,
        PipelineStats? pipeline,
        IReadOnlyList<Operation> ops
    )
    {
        var s = new DeviceStats();
        var entry = func.Regions[0].Entry;
        var schedule = entry.Operations.FirstOrDefault(o => o.Name == "pipe.schedule");
        int m = schedule == null ? 1 : (int)schedule.IntAttr("microbatches"),
            me = 0;
        if (
            schedule != null
            && func.GetAttr("pipeline") is DictAttr pipe
            && pipe.Entries.First(e => e.Key == "axis").Value is StringAttr axis
        )
            me = mesh.Coords(rank)[mesh.AxisNames.ToList().IndexOf(axis.Value)];
        int Times(Operation op) => op.GetAttr("phase") is StringAttr { Value: "step" or "setup" } ? 1 : m;
        var lastUse = new Dictionary<Value, Operation>(ReferenceEqualityComparer.Instance);
        foreach (var op in ops)
        foreach (var v in op.Operands)
            lastUse[v] = op;
        // A started collective reads its operands until its wait.
        foreach (var wait in ops.Where(o => o.Name == "dist.wait"))
        foreach (var v in Dialects.Dist.WaitOpDef.StartOf(wait).Operands)
            if (ReferenceEquals(lastUse[v], Dialects.Dist.WaitOpDef.StartOf(wait)))
                lastUse[v] = wait;
        long live = entry.Arguments.Sum(a => Bytes(a.TensorType)),
            peak = live;
        foreach (var op in ops)
        {
            s.Flops += OpFlops(op) * Times(op);
            Communication(op, mesh, rank, s, Times(op));
            foreach (var r in op.Results)
            {
                live += Bytes(r.TensorType);
                if (op.Name == "tensor.param")
                    s.ParamBytes += Bytes(r.TensorType);
                if (op.Name == "tensor.param" && op.GetAttr("state") != null)
                    s.StateBytes += Bytes(r.TensorType);
            }
            peak = Math.Max(peak, live);
            foreach (var v in op.Operands.Distinct())
                if (ReferenceEquals(lastUse[v], op) && v is OpResult { Owner.Name: not "tensor.param" })
                    live -= Bytes(v.TensorType);
        }
        // Microbatches in flight hold their activations at once (one microbatch's are in the walk above).
        if (pipeline is { } ps)
            peak += Math.Max(
                0,
                ps.Devices[me].PeakActivationBytes
                    - ps.Devices[me].PeakActivationBytes / Math.Max(1, ps.Devices[me].PeakMicrobatches)
            );
        s.PeakBytes = peak;
        return s;
    }

    /// <summary>A count for people: 950, 12.3 M, 4.1 G, 774.6 T.</summary>
    public static string Count(double n)
    {
        string[] units = ["", " K", " M", " G", " T", " P", " E"];
        int u = 0;
        while (n >= 1000 && u < units.Length - 1)
        {
            n /= 1000;
            u++;
        }
        return u == 0
            ? n.ToString("0", System.Globalization.CultureInfo.InvariantCulture)
            : n.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture) + units[u];
    }

    /// <summary>True when the device <paramref name="shift"/> steps along <paramref name="axis"/> exists (sends at the
    /// edge go nowhere).</summary>
    private static bool HasPeer(DeviceMesh mesh, int rank, string axis, int shift)
    {
        int a = mesh.AxisNames.ToList().IndexOf(axis);
        int c = mesh.Coords(rank)[a] + shift;
        return c >= 0 && c < mesh.Sizes[a];
    }

    private static long Bytes(TensorType t) => t.NumElements * t.DType.Size();

    /// <summary>The estimated floating-point operations of one op (0 for data movement).</summary>
    public static double OpFlops(Operation op)
    {
        // A kernel costs what the ops fused into it cost.
        if (op.Name == "kernel.launch" && op.ParentOp?.ParentOp?.Function(op.StringAttr("callee")) is { } kernel)
            return kernel.Regions[0].Entry.Operations.Sum(OpFlops);
        if (op.Results.Count != 1 || op.Dialect != "tensor")
            return 0;
        double n = op.Result.TensorType.NumElements;
        switch (op.Name)
        {
            case "tensor.matmul":
                return 2 * n * op.OperandType(0).Shape[^1];
            case "tensor.param"
            or "tensor.constant"
            or "tensor.reshape"
            or "tensor.transpose"
            or "tensor.broadcast"
            or "tensor.concat"
            or "tensor.embedding":
                return 0;
            case "tensor.sum" or "tensor.mean" or "tensor.max":
                return op.OperandType(0).NumElements;
            case "tensor.softmax" or "tensor.cross_entropy":
                return 5.0 * op.OperandType(0).NumElements;
            case "tensor.layernorm" or "tensor.rmsnorm" or "tensor.gelu":
                return 8 * n;
            default:
                return n;
        }
    }

    /// <summary>
    /// Bytes one device sends in collective <paramref name="op"/> over <paramref name="n"/> devices of an operand of
    /// <paramref name="inBytes"/> under ring algorithms: all_reduce 2(n-1)/n of it, all_gather (n-1) blocks,
    /// reduce_scatter and all_to_all (n-1)/n.
    /// </summary>
    public static double RingBytesSent(string op, double n, double inBytes) =>
        op switch
        {
            "dist.all_reduce" => 2 * (n - 1) / n * inBytes,
            "dist.all_gather" => (n - 1) * inBytes,
            _ => (n - 1) / n * inBytes,
        };

    private static void Communication(Operation op, DeviceMesh mesh, int rank, DeviceStats s, int times)
    {
        if (op.Dialect is not ("dist" or "pipe") || op.Operands.Count == 0 || op.Name is "dist.wait" or "pipe.wait")
            return;
        // A started bucket sends what its collectives would, under the synchronous op's name.
        var start = op.Def as Dialects.Dist.CollectiveStartOpDef;
        double inBytes = start == null ? Bytes(op.OperandType(0)) : op.Operands.Sum(v => Bytes((TensorType)v.Type));
        string opName = start?.SyncName ?? op.Name;
        // The microbatch axis runs in time on this device: summing over it sends nothing.
        var axes = op.GetAttr("axes") is ArrayAttr a
            ? a.AsStrings().Where(x => x != ModuleOp.MicrobatchAxis).ToArray()
            : null;
        if (axes is { Length: 0 })
            return;
        double n = axes != null ? mesh.Product(axes) : mesh.DeviceCount;
        double sent = opName switch
        {
            "dist.all_reduce" or "dist.all_gather" or "dist.reduce_scatter" or "dist.all_to_all" => RingBytesSent(
                opName,
                n,
                inBytes
            ),
            "dist.collective_permute" => Dialects
                .Dist.CollectivePermuteOpDef.Pairs(op.GetAttr("pairs"), m => new IRException(m))
                .Any(p => p.Source == rank && p.Target != rank)
                ? inBytes
                : 0,
            "dist.send" => HasPeer(mesh, rank, op.StringAttr("axis"), (int)op.IntAttr("shift")) ? inBytes : 0,
            "pipe.send" or "pipe.send_start" => inBytes,
            _ => 0,
        };
        var name = op.Name is "pipe.send" or "pipe.send_start" ? "pipe send" : opName[5..];
        var (count, bytes) = s.Collectives.GetValueOrDefault(name);
        s.Collectives[name] = (count + times, bytes + sent * times);
    }
}
