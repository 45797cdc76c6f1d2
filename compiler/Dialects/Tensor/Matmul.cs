using ParallelCompiler.IR;

namespace ParallelCompiler.Dialects.Tensor;

/// <summary>
/// <c>tensor.matmul %a, %b</c>: numpy's matmul. 1-D operands are promoted (a to [1, k], b to [k, 1]) and the
/// added dimension removed from the result; leading (batch) dimensions broadcast.
/// </summary>
public sealed class MatmulOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.matmul";

    /// <inheritdoc/>
    public override string Summary => "matrix product with numpy matmul semantics (batched, broadcasting)";

    /// <inheritdoc/>
    public override int MinOperands => 2;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var (a, b) = (sig.Operands[0], sig.Operands[1]);
        sig.RequireSameDType(a, b);
        // Half-precision operands may give their f32 accumulator as the result, unrounded (mixed precision's
        // weight gradients: summed over microbatches and devices in f32).
        return [new TensorType(sig.Accumulated(a.DType), ResultShape(sig, a, b))];
    }

    /// <summary>Batch dimensions (broadcast), rows and columns are parallel; the contracting dimension is a
    /// reduction.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results)
    {
        var (a, bt) = (sig.Operands[0], sig.Operands[1]);
        var r = results[0].Shape;
        var b = new ShardingRuleBuilder();
        int nb = r.Count - (a.Rank > 1 ? 1 : 0) - (bt.Rank > 1 ? 1 : 0);
        var batch = b.Factors(r.Take(nb).ToArray());
        int k = b.Factor(a.Shape[^1], FactorKind.Reduction);
        int m = a.Rank > 1 ? b.Factor(a.Shape[^2]) : -1,
            n = bt.Rank > 1 ? b.Factor(bt.Shape[^1]) : -1;
        int[] Batch(TensorType t) =>
            t
                .Shape.Take(t.Rank - 2)
                .Select((d, i) => d == r[i + nb - (t.Rank - 2)] ? batch[i + nb - (t.Rank - 2)] : -1)
                .ToArray();
        if (a.Rank == 1)
            b.Operand(k);
        else
            b.Operand([.. Batch(a), m, k]);
        if (bt.Rank == 1)
            b.Operand(k);
        else
            b.Operand([.. Batch(bt), k, n]);
        var res = batch.ToList();
        if (m >= 0)
            res.Add(m);
        if (n >= 0)
            res.Add(n);
        return b.Result(res.ToArray()).Build();
    }

    /// <summary>The result shape of a @ b, or an error naming both shapes.</summary>
    public static long[] ResultShape(OpSignature sig, TensorType a, TensorType b)
    {
        if (a.Rank == 0 || b.Rank == 0)
            throw sig.Error(
                $"operands must have at least one dimension, got " + $"{a.ToSourceString()} and {b.ToSourceString()}"
            );
        var sa = a.Rank == 1 ? new[] { 1L, a.Shape[0] } : a.ShapeArray;
        var sb = b.Rank == 1 ? new[] { b.Shape[0], 1L } : b.ShapeArray;
        long k1 = sa[^1],
            k2 = sb[^2];
        if (k1 != k2)
            throw sig.Error(
                $"contracting dimensions differ: {a.ToSourceString()} @ {b.ToSourceString()} ({k1} vs {k2})"
            );
        var batch =
            ShapeRules.Broadcast(sa[..^2], sb[..^2])
            ?? throw sig.Error($"batch dimensions do not broadcast: {a.ToSourceString()} @ {b.ToSourceString()}");
        var r = new List<long>(batch);
        if (a.Rank > 1)
            r.Add(sa[^2]);
        if (b.Rank > 1)
            r.Add(sb[^1]);
        return r.ToArray();
    }
}
