using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Distributed;

namespace ParallelCompiler.Dialects.Dist;

/// <summary>
/// The collectives of the per-device (SPMD) program. Operands and results are local tensors without shardings;
/// <c>axes</c> names the mesh axes whose devices form each group, major first. Result types are written in the
/// IR and checked against the module's mesh, so a wrong size is caught where it is made.
/// </summary>
public abstract class CollectiveOpDef : OpDef
{
    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override bool IsPure => false;

    /// <summary>What the op needs beyond the mesh: result of the same element type and rank, attributes
    /// present.</summary>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var t = sig.GivenTensor();
        var x = sig.Operands[0];
        if (x.Sharding != null || t.Sharding != null)
            throw sig.Error("collectives act on per-device tensors, which carry no sharding (run spmdize first)");
        if (t.DType != x.DType || t.Rank != x.Rank)
            throw sig.Error($"result {t} must have the element type and rank of the operand {x}");
        if (HasAxes)
            Axes(sig);
        CheckAttrs(sig);
        return [t];
    }

    /// <summary>False for ops whose group is the whole mesh (collective_permute).</summary>
    protected virtual bool HasAxes => true;

    /// <summary>Checks the op's own attributes (dimensions in range).</summary>
    protected abstract void CheckAttrs(OpSignature sig);

    /// <summary>The expected result shape from the operand shape and the product of the axes' sizes.</summary>
    protected abstract long[] ResultShape(Operation op, long[] operand, long groupSize);

    /// <inheritdoc/>
    public override void Verify(Operation op) => VerifyShapes(op, op.OperandType(0), op.Result.TensorType, Short);

    /// <summary>Checks the axes of <paramref name="op"/> against the mesh and that the collective turns <paramref
    /// name="operand"/> into <paramref name="result"/>; messages start with <paramref name="name"/>.</summary>
    internal void VerifyShapes(Operation op, TensorType operand, TensorType result, string name)
    {
        var mesh = MeshOf(op);
        var axes = op.GetAttr("axes") is ArrayAttr a ? a.AsStrings() : [];
        foreach (var ax in axes)
            if (!mesh.AxisNames.Contains(ax))
                throw new IRException($"{name}: mesh axis '{ax}' is not an axis of the mesh ({mesh})");
        var expected = ResultShape(op, operand.ShapeArray, mesh.Product(axes));
        if (!expected.AsSpan().SequenceEqual(result.ShapeArray))
            throw new IRException(
                $"{name}: over [{string.Join(", ", axes)}] ({mesh.Product(axes)} devices) a "
                    + $"{operand} gives "
                    + $"tensor<{string.Join("x", expected)}x{result.DType.Name()}>, not {result}"
            );
    }

    /// <summary>The op name without the dialect.</summary>
    protected string Short => Name[(Name.IndexOf('.') + 1)..];

    /// <summary>The mesh of the module holding <paramref name="op"/> (a single device when there is none).</summary>
    public static DeviceMesh MeshOf(Operation op)
    {
        var top = op;
        while (top.ParentOp != null)
            top = top.ParentOp;
        return top.Name == "builtin.module" ? top.DeviceMesh() : DeviceMesh.Single;
    }

    /// <summary>The <c>axes</c> attribute: distinct mesh axis names.</summary>
    protected static string[] Axes(OpSignature sig)
    {
        if (sig.Attrs.GetValueOrDefault("axes") is not ArrayAttr a || !a.Items.All(i => i is StringAttr))
            throw sig.Error("needs attribute 'axes' as an array of mesh axis names");
        var axes = a.AsStrings();
        if (axes.Distinct().Count() != axes.Length)
            throw sig.Error($"axis repeated in [{string.Join(", ", axes)}]");
        return axes;
    }

    /// <summary>An integer attribute that must be a dimension of the operand.</summary>
    protected static int Dim(OpSignature sig, string key)
    {
        long d = sig.Int(key);
        if (d < 0 || d >= sig.Operands[0].Rank)
            throw sig.Error($"{key} {d} is out of range for {sig.Operands[0]}");
        return (int)d;
    }

    /// <summary>The shape with dimension <paramref name="dim"/> multiplied (or, with <paramref name="divide"/>,
    /// divided) by <paramref name="n"/>.</summary>
    protected static long[] Scale(long[] shape, int dim, long n, bool divide)
    {
        var r = (long[])shape.Clone();
        r[dim] = divide ? (r[dim] % n == 0 ? r[dim] / n : -1) : r[dim] * n;
        return r;
    }
}

/// <summary><c>dist.all_reduce %x {axes, reduction = "sum" | "max"}</c>: every member gets the reduction over its
/// group.</summary>
public sealed class AllReduceOpDef : CollectiveOpDef
{
    /// <inheritdoc/>
    public override string Name => "dist.all_reduce";

    /// <inheritdoc/>
    public override string Summary => "reduce over the group; every member gets the result (partial sums made whole)";

    /// <inheritdoc/>
    protected override void CheckAttrs(OpSignature sig)
    {
        if (sig.Str("reduction") is not ("sum" or "max"))
            throw sig.Error($"unknown reduction " + $"'{sig.Str("reduction")}' (expected sum or max)");
    }

    /// <inheritdoc/>
    protected override long[] ResultShape(Operation op, long[] x, long n) => x;
}

/// <summary><c>dist.all_gather %x {axes, dim}</c>: concatenate the group's blocks along <c>dim</c> (split to
/// replicated).</summary>
public sealed class AllGatherOpDef : CollectiveOpDef
{
    /// <inheritdoc/>
    public override string Name => "dist.all_gather";

    /// <inheritdoc/>
    public override string Summary => "concatenate the group's blocks along a dimension";

    /// <inheritdoc/>
    protected override void CheckAttrs(OpSignature sig) => Dim(sig, "dim");

    /// <inheritdoc/>
    protected override long[] ResultShape(Operation op, long[] x, long n) => Scale(x, (int)op.IntAttr("dim"), n, false);
}

/// <summary><c>dist.all_slice %x {axes, dim}</c>: keep this member's block of <c>dim</c>; no communication (replicated
/// to split).</summary>
public sealed class AllSliceOpDef : CollectiveOpDef
{
    /// <inheritdoc/>
    public override string Name => "dist.all_slice";

    /// <inheritdoc/>
    public override string Summary => "keep the local block of a dimension (no communication)";

    /// <inheritdoc/>
    public override bool IsPure => true;

    /// <inheritdoc/>
    protected override void CheckAttrs(OpSignature sig) => Dim(sig, "dim");

    /// <inheritdoc/>
    protected override long[] ResultShape(Operation op, long[] x, long n) => Scale(x, (int)op.IntAttr("dim"), n, true);
}

/// <summary><c>dist.reduce_scatter %x {axes, dim}</c>: sum over the group, each member keeps its block of <c>dim</c>
/// (partial to split).</summary>
public sealed class ReduceScatterOpDef : CollectiveOpDef
{
    /// <inheritdoc/>
    public override string Name => "dist.reduce_scatter";

    /// <inheritdoc/>
    public override string Summary => "sum over the group and keep the local block of a dimension";

    /// <inheritdoc/>
    protected override void CheckAttrs(OpSignature sig) => Dim(sig, "dim");

    /// <inheritdoc/>
    protected override long[] ResultShape(Operation op, long[] x, long n) => Scale(x, (int)op.IntAttr("dim"), n, true);
}

/// <summary><c>dist.all_to_all %x {axes, split_dim, concat_dim}</c>: move the split from <c>concat_dim</c> to
/// <c>split_dim</c>.</summary>
public sealed class AllToAllOpDef : CollectiveOpDef
{
    /// <inheritdoc/>
    public override string Name => "dist.all_to_all";

    /// <inheritdoc/>
    public override string Summary =>
        "split one dimension over the group and concatenate another (moves a split between dimensions)";

    /// <inheritdoc/>
    protected override void CheckAttrs(OpSignature sig)
    {
        if (Dim(sig, "split_dim") == Dim(sig, "concat_dim"))
            throw sig.Error("split_dim and concat_dim must differ");
    }

    /// <inheritdoc/>
    protected override long[] ResultShape(Operation op, long[] x, long n) =>
        Scale(Scale(x, (int)op.IntAttr("split_dim"), n, true), (int)op.IntAttr("concat_dim"), n, false);
}

/// <summary>
/// <c>dist.collective_permute %x {pairs = [[source, target], ...]}</c>: device ranks of the whole mesh; each target
/// receives its source's block, devices that are no target get zeros.
/// </summary>
public sealed class CollectivePermuteOpDef : CollectiveOpDef
{
    /// <inheritdoc/>
    public override string Name => "dist.collective_permute";

    /// <inheritdoc/>
    public override string Summary =>
        "send each device's block to another device by rank (zeros where nothing arrives)";

    /// <inheritdoc/>
    protected override bool HasAxes => false;

    /// <inheritdoc/>
    protected override void CheckAttrs(OpSignature sig) => Pairs(sig.Attrs.GetValueOrDefault("pairs"), sig.Error);

    /// <inheritdoc/>
    protected override long[] ResultShape(Operation op, long[] x, long n) => x;

    /// <inheritdoc/>
    public override void Verify(Operation op)
    {
        base.Verify(op);
        int devices = MeshOf(op).DeviceCount;
        foreach (var (s, t) in Pairs(op.GetAttr("pairs"), m => new IRException($"collective_permute: {m}")))
            if (s >= devices || t >= devices)
                throw new IRException(
                    $"collective_permute: pair [{s}, {t}] names a device beyond the mesh's {devices}"
                );
    }

    /// <summary>The <c>pairs</c> attribute: no device is a source twice or a target twice.</summary>
    public static (int Source, int Target)[] Pairs(Attr? attr, Func<string, Exception> error)
    {
        if (
            attr is not ArrayAttr a
            || !a.Items.All(p => p is ArrayAttr { Items.Count: 2 } q && q.Items.All(i => i is IntAttr { Value: >= 0 }))
        )
            throw error("needs attribute 'pairs' as [[source, target], ...] of device ranks");
        var pairs = a.Items.Select(p => ((ArrayAttr)p).AsInts()).Select(p => ((int)p[0], (int)p[1])).ToArray();
        if (
            pairs.Select(p => p.Item1).Distinct().Count() != pairs.Length
            || pairs.Select(p => p.Item2).Distinct().Count() != pairs.Length
        )
            throw error("a device appears twice as a source or twice as a target");
        return pairs;
    }
}

/// <summary>
/// Point-to-point transfers along one mesh axis: <c>dist.send %x {axis, shift}</c> sends to the device
/// <c>shift</c> steps further along <c>axis</c> (nothing when that is beyond the edge), and
/// <c>dist.recv {axis, shift} : () -> T</c> receives from the device <c>shift</c> steps back (zeros at the edge).
/// Messages between two devices arrive in the order they were sent.
/// </summary>
public abstract class PointToPointOpDef : OpDef
{
    /// <inheritdoc/>
    public override bool IsPure => false;

    /// <summary>Checks <c>axis</c> and <c>shift</c>.</summary>
    protected static void CheckPeer(OpSignature sig)
    {
        sig.Str("axis");
        if (sig.Int("shift") == 0)
            throw sig.Error("shift must not be 0");
    }

    /// <inheritdoc/>
    public override void Verify(Operation op)
    {
        var mesh = CollectiveOpDef.MeshOf(op);
        string axis = op.StringAttr("axis");
        if (!mesh.AxisNames.Contains(axis))
            throw new IRException($"{Name[5..]}: mesh axis '{axis}' is not an axis of " + $"the mesh ({mesh})");
    }
}

/// <summary><c>dist.send %x {axis, shift}</c>.</summary>
public sealed class SendOpDef : PointToPointOpDef
{
    /// <inheritdoc/>
    public override string Name => "dist.send";

    /// <inheritdoc/>
    public override string Summary => "send a tensor to the device shift steps along a mesh axis";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        CheckPeer(sig);
        return [];
    }
}

/// <summary><c>dist.recv {axis, shift} : () -> T</c>.</summary>
public sealed class RecvOpDef : PointToPointOpDef
{
    /// <inheritdoc/>
    public override string Name => "dist.recv";

    /// <inheritdoc/>
    public override string Summary => "receive a tensor from the device shift steps back along a mesh axis";

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        CheckPeer(sig);
        var t = sig.GivenTensor();
        if (t.Sharding != null)
            throw sig.Error("transfers act on per-device tensors, which carry no sharding");
        return [t];
    }
}
