using ParallelCompiler.IR;
using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Dialects.Tensor;

/// <summary><c>tensor.slice %x {axis, start, length}</c>: the block [start, start + length) of one axis (the gradient
/// of concat).</summary>
public sealed class SliceOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.slice";

    /// <inheritdoc/>
    public override string Summary => "a contiguous block of one axis";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, Attr> Normalize(
        IReadOnlyList<TensorType> operands,
        IReadOnlyDictionary<string, Attr> attrs
    )
    {
        var r = new Dictionary<string, Attr>(attrs);
        foreach (var kv in ShapeRules.NormalizeAxisAttr(Name, operands, attrs))
            r[kv.Key] = kv.Value;
        return r;
    }

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var x = sig.Operands[0];
        int axis = (int)sig.Int("axis");
        long start = sig.Int("start"),
            length = sig.Int("length");
        if (start < 0 || length < 0 || start + length > x.Shape[axis])
            throw sig.Error($"[{start}, {start + length}) is outside axis {axis} of {x.ToSourceString()}");
        var shape = x.ShapeArray;
        shape[axis] = length;
        return [new TensorType(x.DType, shape)];
    }

    /// <summary>Like concat: every axis but the sliced one is shared; the sliced one must be whole.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results)
    {
        int axis = (int)sig.Int("axis");
        var b = new ShardingRuleBuilder();
        var f = b.Factors(results[0].Shape);
        b.Replicate(f[axis]);
        b.Operand(
            f.Select((x, i) => i == axis ? b.Factor(sig.Operands[0].Shape[axis], FactorKind.NeedReplication) : x)
                .ToArray()
        );
        return b.Result(f).Build();
    }
}

/// <summary><c>tensor.one_hot %labels [, %first] {classes [, total]} : -> T</c>: 1 at each label's class, 0 elsewhere;
/// result labels.shape + [classes] of the given float type. With <c>%first</c> (an i32 scalar) it is the block of
/// classes first to first + classes - 1 of one-hot rows over <c>total</c> classes: a label outside the block gives a
/// row of zeros (a device's block of a vocabulary-split one-hot).</summary>
public sealed class OneHotOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.one_hot";

    /// <inheritdoc/>
    public override string Summary => "one-hot rows of integer labels (the gradient of cross_entropy)";

    /// <inheritdoc/>
    public override int MinOperands => 1;

    /// <inheritdoc/>
    public override int MaxOperands => 2;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var labels = sig.Operands[0];
        if (labels.DType != DType.I32)
            throw sig.Error($"labels must be i32, got {labels.ToSourceString()}");
        long classes = sig.Int("classes");
        if (sig.Operands.Count == 2)
        {
            if (sig.Operands[1].DType != DType.I32 || sig.Operands[1].Rank != 0)
                throw sig.Error($"the first class must be an i32 scalar, got {sig.Operands[1].ToSourceString()}");
            if (sig.Int("total") < classes)
                throw sig.Error($"a block of {classes} classes does not fit in {sig.Int("total")}");
        }
        var t = sig.GivenTensor();
        sig.RequireFloat(t, "the result");
        if (!t.Shape.SequenceEqual(labels.Shape.Append(classes)))
            throw sig.Error($"result {t} must have shape " + $"{ShapeRules.Str(labels.Shape.Append(classes))}");
        return [t];
    }

    /// <summary>Positions are parallel. A device may hold a block of the classes: spmdize gives it the block's
    /// first class.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results)
    {
        var b = new ShardingRuleBuilder();
        var pos = b.Factors(sig.Operands[0].Shape);
        int c = b.Factor(
            results[0].Shape[^1],
            sig.Operands.Count == 1 ? FactorKind.Exchanged : FactorKind.NeedReplication
        );
        b.Operand(pos);
        if (sig.Operands.Count == 2)
            b.Operand(Array.Empty<int>());
        return b.Result([.. pos, c]).Build();
    }
}

/// <summary><c>tensor.embedding_grad %ids, %dy {rows}</c>: the table gradient of embedding: row r is the sum of dy at
/// the positions whose id is r.</summary>
public sealed class EmbeddingGradOp : OpDef
{
    /// <inheritdoc/>
    public override string Name => "tensor.embedding_grad";

    /// <inheritdoc/>
    public override string Summary => "scatter-add rows of dy into a [rows, D] table by integer ids";

    /// <inheritdoc/>
    public override int MinOperands => 2;

    /// <inheritdoc/>
    public override IReadOnlyList<MplType> InferResultTypes(OpSignature sig)
    {
        var (ids, dy) = (sig.Operands[0], sig.Operands[1]);
        if (ids.DType != DType.I32)
            throw sig.Error($"ids must be i32, got {ids.ToSourceString()}");
        sig.RequireFloat(dy, "dy");
        if (dy.Rank != ids.Rank + 1 || !dy.Shape.Take(ids.Rank).SequenceEqual(ids.Shape))
            throw sig.Error($"dy {dy.ToSourceString()} must be ids {ids.ToSourceString()} plus one trailing dimension");
        return [new TensorType(sig.Accumulated(dy.DType), [sig.Int("rows"), dy.Shape[^1]])];
    }

    /// <summary>Positions are summed over (split, they leave partial tables); rows are indexed by ids, so they stay
    /// whole.</summary>
    public override ShardingRule? GetShardingRule(OpSignature sig, IReadOnlyList<TensorType> results)
    {
        var b = new ShardingRuleBuilder();
        var pos = b.Factors(sig.Operands[0].Shape, FactorKind.Reduction);
        int rows = b.Factor(results[0].Shape[0], FactorKind.NeedReplication),
            cols = b.Factor(results[0].Shape[1]);
        return b.Operand(pos).Operand([.. pos, cols]).Result(rows, cols).Build();
    }
}
